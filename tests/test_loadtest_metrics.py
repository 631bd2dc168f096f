"""The figures users compare against: TTFT, chunk gap (vLLM's ITL), TPOT
(vLLM's), ITL (guidellm's), e2e, output tokens/s from usage or counted, and goodput under --slo.
Definitions are checked on known data; the end-to-end runs use lower bounds only."""
import json
import math
import os

import pytest

from tests.sse_target import SSETarget
from tornado_grok.loadtest import cli, report, slo
from tornado_grok.loadtest.client import Result
from tornado_grok.loadtest.stats import Recorder, summarize

USAGE_MD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tornado_grok", "loadtest", "USAGE.md")


@pytest.fixture(scope="module")
def target():
    t = SSETarget()
    yield t
    t.close()


def request(rec, t0, chunks_at, end_at, tokens=None, end="done"):
    res = Result()
    res.t0 = t0
    rec.started_one()
    for t in chunks_at:
        rec.content_event(res, t)
    res.t_end, res.end, res.status, res.tokens = end_at, end, 200, tokens
    rec.finished_one(res)


def test_definitions_on_known_data():
    rec = Recorder()
    rec.t_start = rec.t_last_end = 0.0
    # TTFT 100 ms, 5 tokens (usage), chunks at 0.1, 0.2, 0.4, 0.5 s, end at 0.6 s.
    request(rec, 0.0, [0.1, 0.2, 0.4, 0.5], 0.6, tokens=5)
    # No usage: 3 chunks counted as 3 tokens; TTFT 200 ms, last chunk 0.6 s, end 1.0 s.
    request(rec, 0.0, [0.2, 0.4, 0.6], 1.0)
    assert [round(x, 6) for x in rec.gap_ms] == [100.0, 200.0, 100.0, 200.0, 200.0]  # chunk gap
    assert [round(x, 6) for x in rec.tpot_ms] == [125.0, 400.0]  # vLLM: (e2e - ttft) / (tokens - 1)
    assert [round(x, 6) for x in rec.itl_ms] == [100.0, 200.0]   # guidellm: (last - first) / (tokens - 1)
    assert [round(x, 6) for x in rec.req_tps] == [round(5 / 0.6, 6), 3.0]  # tokens / e2e
    s = summarize(rec)
    assert s["output_tokens"] == 8 and s["output_tokens_source"] == "usage, else counted"
    assert s["tokens"] == 5  # usage only, as before
    assert s["output_tokens_per_s"] == 8.0  # over the run's 1.0 s
    assert s["total_ms"]["max"] == 1000.0 and s["goodput"] is None


def test_goodput_counts_requests_within_every_per_request_limit():
    rec = Recorder()
    rec.t_start = rec.t_last_end = 0.0
    request(rec, 0.0, [0.1, 0.2], 0.3, tokens=2)        # ttft 100, tpot 200, e2e 300
    request(rec, 0.0, [0.6, 0.7], 0.8, tokens=2)        # ttft 600: too slow a start
    request(rec, 0.0, [0.1], 0.2, tokens=1)             # one token: no tpot, which does not count against
    request(rec, 0.0, [0.1], 0.2, end="error_event")    # not done: never good
    slos = slo.parse_slos("ttft_p99=500ms,tpot_p50=0.25s,chunk_gap_max=1ms")
    lim = slo.limits(slos)
    assert lim == {"ttft": 500.0, "tpot": 250.0}  # chunk_gap only judges the run
    s = summarize(rec, lim)
    assert s["goodput"] == {"requests": 2, "per_s": 2.5, "share": 0.5, "limits_ms": lim}
    got = {r["slo"]: r for r in slo.evaluate(rec, slos)}
    assert got["ttft_p99=500ms"] == {"slo": "ttft_p99=500ms", "value_ms": 600.0, "limit_ms": 500.0, "met": False}
    assert got["tpot_p50=0.25s"]["met"] and not got["chunk_gap_max=1ms"]["met"]


def test_end_to_end_figures(target, capsys):
    assert cli.main(["--url", target.url, "-c", "2", "-n", "4", "--prompt", "chunks=6 delay=20",
                     "--slo", "ttft_p99=60s", "--json", "--no-progress"]) == 0
    s = json.loads(capsys.readouterr().out)["runs"][0]["summary"]
    assert s["tpot_ms"]["n"] == s["itl_ms"]["n"] == 4
    assert s["tpot_ms"]["min"] >= 20.0 and s["itl_ms"]["min"] >= 20.0 and s["gap_ms"]["p50"] >= 20.0
    assert s["itl_ms"]["max"] <= s["tpot_ms"]["max"]  # the last token never comes after the end
    assert s["output_tokens"] == s["tokens"] == 24 and s["output_tokens_source"] == "usage"
    assert s["goodput"]["requests"] == 4 and s["goodput"]["share"] == 1.0
    assert s["request_output_tokens_per_s"]["n"] == 4


def test_tokens_are_counted_when_the_target_sends_no_usage(target, capsys):
    assert cli.main(["--url", target.url, "-n", "3", "--prompt", "chunks=5",
                     "--extra-body", '{"stream_options": {"include_usage": false}}', "--json", "--no-progress"]) == 0
    s = json.loads(capsys.readouterr().out)["runs"][0]["summary"]
    assert s["tokens"] is None and s["output_tokens"] == 15 and s["output_tokens_source"] == "counted"
    assert s["tpot_ms"]["n"] == 3


def test_the_names_users_compare_against(target, capsys):
    assert cli.main(["--url", target.url, "-n", "2", "--prompt", "chunks=3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for word in ("chunk gap", "TPOT", "ITL", "e2e", "vLLM", "guidellm", "output"):
        assert word in out
    assert "token gap" not in out
    with open(USAGE_MD) as f:
        usage = f.read()
    assert "token gap" not in usage and "vLLM" in usage and "guidellm" in usage and "goodput" in usage


def test_slo_parsing():
    assert slo.parse_slos("ttft_p99=500ms, tpot_p50=50") == [("ttft", "p99", 500.0, "ttft_p99=500ms"),
                                                             ("tpot", "p50", 50.0, "tpot_p50=50")]
    assert slo.parse_slos("e2e_max=2s")[0][2] == 2000.0 and slo.parse_slos("itl_mean=1500us")[0][2] == 1.5
    for bad in ("ttft=1ms", "ttft_p99=", "ttft_p99=5h", "foo_p50=1ms", ""):
        with pytest.raises(ValueError):
            slo.parse_slos(bad)
    assert math.isclose(slo.stat_of([1.0, math.nan, 3.0], "mean"), 2.0)
    assert slo.stat_of([math.nan], "p50") is None
    assert report.SCHEMA == "tornado_grok.loadtest/1"
