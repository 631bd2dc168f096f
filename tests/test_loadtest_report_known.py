"""The load tester's report (report.py) on known data: the rate sweep (rows in rate order, the knee as
the highest passing rate, a lower failed rate still shown, the sweep's table), goodput and SLO lines
(met / MISSED / no samples, "none per request"), the reasons for exit status 1 per target, and
the table's caps and ordering. Figures are worked out by hand in the comments; one CLI run checks
what a user sees for an SLO that is missed and one that is met."""
import pytest

from tests.sse_target import SSETarget
from tornado_grok.loadtest import cli, report, slo
from tornado_grok.loadtest.client import Result, Target
from tornado_grok.loadtest.stats import Recorder

SLOS = "ttft_p99=500ms,tpot_p50=0.25s"


class FakeTarget:
    """What run_entry reads of a client.Target (which would resolve its host)."""

    def __init__(self, port):
        self.url, self.host, self.port = f"http://127.0.0.1:{port}/v1", "127.0.0.1", port
        self.path = "/v1/chat/completions"


def me(warnings=()):
    return {"cpu_pct_of_one_core": 5.0, "peak_interval_cpu_pct": 9.6, "loop_lag_ms_p99": 0.5,
            "cpu_wait_s": None, "rss_mib_max": 20.0, "warnings": list(warnings)}


def req(rec, t0, chunks_at, end_at, tokens=None, end="done", status=200, detail=None):
    res = Result()
    res.t0 = t0
    rec.started_one()
    for t in chunks_at:
        rec.content_event(res, t)
    res.t_end, res.end, res.status, res.tokens, res.detail = end_at, end, status, tokens, detail
    rec.finished_one(res)


def recorder(*requests):
    rec = Recorder()
    rec.t_start = rec.t_last_end = 0.0
    for r in requests:
        req(rec, *r[:3], **(r[3] if len(r) > 3 else {}))
    return rec


def entry(label, port, rec, rate, slos, max_error_rate=0.0, warnings=()):
    """A run's entry as cli.py builds it: summary with goodput, the SLOs' results, the verdict."""
    e = report.run_entry(label, FakeTarget(port), rec, me(warnings), 1, limits=slo.limits(slos) if slos else None)
    e["rate"] = rate
    if slos:
        e["slo"] = slo.evaluate(rec, slos)
    e["failed"] = slo.verdict(e["summary"], max_error_rate, e.get("slo"))
    return e


def three_tokens(ttft_s):
    """One answer: chunks at ttft, +0.1, +0.2 s, end 0.1 s later: TPOT (e2e - ttft) / 2 = 150 ms."""
    return (0.0, [ttft_s, ttft_s + 0.1, ttft_s + 0.2], ttft_s + 0.3, {"tokens": 3})


def sweep_doc():
    slos = slo.parse_slos(SLOS)
    runs = {
        # 10/s: one answer (TTFT 100 ms) and one 500 over 1.0 s: 1 of 2 failed, more than 0%.
        ("target", 10.0): recorder(three_tokens(0.1),
                                   (0.0, [], 1.0, {"end": "http_error", "status": 500, "detail": "HTTP 500: boom"})),
        # 20/s: TTFT 100 and 200 ms over 0.5 s: 4 done/s, TTFT p50 100 (nearest rank), p99 200.
        ("target", 20.0): recorder(three_tokens(0.1), three_tokens(0.2)),
        # 30/s: TTFT 100 and 300 ms over 0.6 s: 3.333 done/s.
        ("target", 30.0): recorder(three_tokens(0.1), three_tokens(0.3)),
        # 40/s: TTFT 600 and 700 ms over 1.0 s: 2 done/s, ttft_p99 missed, goodput 0.
        ("target", 40.0): recorder(three_tokens(0.6), three_tokens(0.7)),
        # The compare target fails at its only rate (1 done over 1.2 s: 0.833/s).
        ("compare", 10.0): recorder(three_tokens(0.9)),
    }
    order = [("target", 20.0), ("target", 10.0), ("compare", 10.0), ("target", 40.0), ("target", 30.0)]
    entries = [entry(label, 8000 if label == "target" else 9000, runs[(label, rate)], rate, slos,
                     warnings=["busy"] if rate == 20.0 and label == "target" else ())
               for label, rate in order]
    config = {"shape": "open loop rate sweep, 10, 20, 30, 40 req/s Poisson (seed 1)", "prompt": "p",
              "stream": True, "model": "m", "requests": 2, "duration_s": None, "timeout_s": 60.0,
              "rate_sweep": [10.0, 20.0, 30.0, 40.0], "slo": SLOS.split(","), "max_error_rate": 0.0}
    return report.document(config, entries)


def test_sweep_rows_are_in_rate_order_and_the_knee_is_the_highest_passing_rate():
    doc = sweep_doc()
    sw = doc["sweep"]["target"]
    assert [r["rate"] for r in sw["rows"]] == [10.0, 20.0, 30.0, 40.0]
    # 10/s failed and 40/s failed: the knee is 30 (the highest that passed, not the first or lowest).
    assert [r["passed"] for r in sw["rows"]] == [False, True, True, False] and sw["knee"] == 30.0
    assert sw["rows"][0] == {"rate": 10.0, "requests_per_s": 1.0, "goodput_per_s": 1.0, "ttft_p50_ms": 100.0,
                             "ttft_p99_ms": 100.0, "tpot_p50_ms": 150.0, "errors": 1, "finished": 2,
                             "passed": False, "why": ["1 of 2 requests failed (50.0% > --max-error-rate 0%)"]}
    assert sw["rows"][1] == {"rate": 20.0, "requests_per_s": 4.0, "goodput_per_s": 4.0, "ttft_p50_ms": 100.0,
                             "ttft_p99_ms": 200.0, "tpot_p50_ms": 150.0, "errors": 0, "finished": 2,
                             "passed": True, "why": []}
    assert sw["rows"][3]["why"] == ["SLO ttft_p99=500ms missed: 700 ms"] and sw["rows"][3]["goodput_per_s"] == 0.0
    assert doc["sweep"]["compare"]["knee"] is None
    # Exit status 1 only for a target with no passing rate; no comparison in a sweep.
    assert doc["failed"] == ["compare: no rate of the sweep met the SLOs and --max-error-rate"]
    assert doc["comparison"] is None
    assert doc["warnings"] == ["target @ 20/s: busy"]


def test_sweep_rows_without_slos_have_no_goodput():
    rows = report.sweep_summary([dict(entry("target", 8000, recorder(three_tokens(0.1)), 5.0, []),
                                      label="target")])
    assert rows["target"]["rows"][0]["goodput_per_s"] is None and rows["target"]["knee"] == 5.0
    bare = {"label": "t", "rate": 1.0, "summary": report.run_entry("t", FakeTarget(1), recorder(), me(), 0)["summary"]}
    assert report.sweep_summary([bare])["t"]["rows"][0]["passed"]  # no "failed" key: nothing failed


EXPECTED_SWEEP = """\
rate sweep [target]: knee 30 req/s (the highest rate that met the SLOs and --max-error-rate)
      rate   done/s   good/s  TTFT p50  TTFT p99  TPOT p50  errors  verdict
        10      1.0      1.0    100.00    100.00    150.00       1  FAIL: 1 of 2 requests failed (50.0% > --max-error-rate 0%)
        20      4.0      4.0    100.00    200.00    150.00       0  ok
        30      3.3      3.3    100.00    300.00    150.00       0  ok
        40      2.0      0.0    600.00    700.00    150.00       0  FAIL: SLO ttft_p99=500ms missed: 700 ms

rate sweep [compare]: knee none (the highest rate that met the SLOs and --max-error-rate)
      rate   done/s   good/s  TTFT p50  TTFT p99  TPOT p50  errors  verdict
        10      0.8      0.0    900.00    900.00    150.00       0  FAIL: SLO ttft_p99=500ms missed: 900 ms
"""


def test_the_sweep_table():
    text = report.table(sweep_doc())
    assert text.endswith("\n\n" + EXPECTED_SWEEP)
    assert "comparison (" not in text
    runs = [line for line in text.splitlines() if line.startswith("[")]
    assert runs == ["[target at 20 req/s] POST http://127.0.0.1:8000/v1/chat/completions",
                    "[target at 10 req/s] POST http://127.0.0.1:8000/v1/chat/completions",
                    "[compare at 10 req/s] POST http://127.0.0.1:9000/v1/chat/completions",
                    "[target at 40 req/s] POST http://127.0.0.1:8000/v1/chat/completions",
                    "[target at 30 req/s] POST http://127.0.0.1:8000/v1/chat/completions"]
    assert "caps: 2 requests; per-request timeout 60 s\n" in text
    # Each run's goodput and SLO lines: 40/s had no answer within 500 ms, 10/s one of two requests.
    assert ("  goodput    0 requests within ttft <= 500 ms, tpot <= 250 ms: 0.00 req/s (0.0%)\n"
            "  SLO        ttft_p99=500ms: 700 ms MISSED\n"
            "  SLO        tpot_p50=0.25s: 150 ms met\n") in text
    assert "  goodput    1 requests within ttft <= 500 ms, tpot <= 250 ms: 1.00 req/s (50.0%)\n" in text


def test_goodput_and_slo_lines_and_the_reasons_per_target():
    # Only a run-wide SLO (chunk_gap) and one on e2e that nothing measured: every answer is "good".
    slos = slo.parse_slos("chunk_gap_max=1s")
    a = entry("target", 8000, recorder(three_tokens(0.1), (0.0, [], 0.5, {"end": "timeout", "detail": "slow"})),
              None, slos, max_error_rate=0.6)
    nothing = slo.parse_slos("e2e_max=2s")
    b = entry("compare", 9000, recorder((0.0, [], 0.5, {"end": "timeout"})), None, nothing, max_error_rate=1.0)
    doc = report.document({"shape": "closed loop, 1 client", "prompt": "p", "stream": False, "model": "m",
                           "requests": None, "duration_s": 2.5, "timeout_s": 0.5, "rounds": 1}, [a, b])
    assert doc["failed"] == ["compare: SLO e2e_max=2s missed: no samples"]
    assert doc["sweep"] is None and doc["comparison"]["requests_per_s_ratio"] is None
    text = report.table(doc)
    assert text.startswith("tornado_grok loadtest: closed loop, 1 client; prompt 'p'; no stream; model m\n"
                           "caps: 2.5 s; per-request timeout 0.5 s\n\n[target] POST ")
    # a: 1 done of 2 finished over 0.5 s; limits: none per request (chunk_gap judges the run only).
    assert ("  goodput    1 requests within none per request: 2.00 req/s (50.0%)\n"
            "  SLO        chunk_gap_max=1s: 100 ms met\n"
            "  ends       done 1, timeout 1\n"
            "    e.g. timeout: slow  (x1)\n") in text
    # b: no answer, so no e2e sample; goodput 0 of 1 within e2e <= 2000 ms.
    assert ("  goodput    0 requests within e2e <= 2000 ms: 0.00 req/s (0.0%)\n"
            "  SLO        e2e_max=2s: no samples MISSED\n"
            "  ends       timeout 1\n"
            "    e.g. timeout  (x1)\n") in text
    # Every reason of every target, each prefixed with its label (not only the first target's).
    a["failed"], b["failed"] = ["x", "y"], ["z"]
    assert report.document({"rounds": 1}, [a, b])["failed"] == ["target: x", "target: y", "compare: z"]


def test_goodput_share_of_a_run_with_nothing_finished():
    e = entry("target", 8000, recorder(), None, slo.parse_slos("ttft_p50=1ms"), max_error_rate=1.0)
    assert e["summary"]["goodput"] == {"requests": 0, "per_s": 0.0, "share": None, "limits_ms": {"ttft": 1.0}}
    doc = report.document({"shape": "s", "prompt": "p", "stream": True, "model": "m", "requests": 1,
                           "duration_s": None, "timeout_s": 1.0}, [e])
    text = report.table(doc)
    assert "  goodput    0 requests within ttft <= 1 ms: 0.00 req/s (0.0%)\n" in text
    assert "  SLO        ttft_p50=1ms: no samples MISSED\n  ends       -\n" in text
    assert doc["failed"] == ["target: no request finished", "target: SLO ttft_p50=1ms missed: no samples"]


def test_ends_by_count_and_odd_statuses_in_order():
    rec = recorder((0.0, [], 0.1, {"end": "http_error", "status": 503}),
                   (0.0, [], 0.1, {"end": "http_error", "status": 429}),
                   (0.0, [], 0.1, {"end": "http_error", "status": 503}),
                   (0.0, [], 0.1, {"end": "timeout", "status": None}),
                   three_tokens(0.1))
    doc = report.document({"shape": "s", "prompt": "p", "stream": True, "model": "m", "requests": 5,
                           "duration_s": None, "timeout_s": 1.0}, [entry("target", 8000, rec, None, [])])
    text = report.table(doc)
    # Most frequent end first; statuses other than 200 sorted by their text (200 is not listed).
    assert "  ends       http_error 3, timeout 1, done 1\n" in text
    assert "  statuses   429: 1, 503: 2, none: 1\n" in text


def test_a_missed_and_a_met_slo_end_to_end(capsys):
    t = SSETarget()
    try:
        code = cli.main(["--url", t.url, "-c", "1", "-n", "2", "--prompt", "chunks=3", "--no-progress",
                         "--slo", "ttft_p99=60s,e2e_max=1us"])
    finally:
        t.close()
    assert code == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    slo_lines = [line for line in lines if line.startswith("  SLO ")]
    assert len(slo_lines) == 2
    assert slo_lines[0].startswith("  SLO        ttft_p99=60s: ") and slo_lines[0].endswith(" ms met")
    assert slo_lines[1].startswith("  SLO        e2e_max=1us: ") and slo_lines[1].endswith(" ms MISSED")
    assert "  goodput    0 requests within ttft <= 60000 ms, e2e <= 0.001 ms: 0.00 req/s (0.0%)" in lines
    stderr = captured.err.splitlines()
    assert [line.split(" missed: ")[0] for line in stderr if "FAILED" in line] == [
        "loadtest: FAILED: target: SLO e2e_max=1us"]


def test_the_request_line_names_an_ipv6_or_https_target_as_a_url():
    # Before: "POST http://::1:8000/..." (no brackets) and "POST http://" for an https target.
    lines = []
    for url in ("http://[::1]:8000/v1", "HTTPS://127.0.0.1:8443/v1/chat/completions"):
        e = report.run_entry("target", Target(url), recorder(three_tokens(0.1)), me(), 1)
        doc = report.document({"shape": "s", "prompt": "p", "stream": True, "model": "m", "requests": 1,
                               "duration_s": None, "timeout_s": 1.0}, [e])
        lines += [line for line in report.table(doc).splitlines() if line.startswith("[target]")]
        if url.startswith("http:"):
            assert e["endpoint"] == "[::1]:8000/v1/chat/completions"
    assert lines == ["[target] POST http://[::1]:8000/v1/chat/completions",
                     "[target] POST https://127.0.0.1:8443/v1/chat/completions"]
