"""The load tester's verdicts: a malformed event is a protocol_error and never a
content chunk, --expect-chunks checks the answer, and the exit status is 1 past --max-error-rate
(default 1%) or on a missed --slo. Against tests/sse_target.py; counts exact, timings lower bounds."""
import json

import pytest

from tests.sse_target import SSETarget
from tests.test_loadtest_parser import SSE_HEAD, USAGE, chunked, delta, feed
from tornado_grok.loadtest import cli


@pytest.fixture(scope="module")
def target():
    t = SSETarget()
    yield t
    t.close()


def run(capsys, *argv):
    code = cli.main(list(argv) + ["--json", "--no-progress"])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out else None, out.err


def test_a_malformed_event_is_a_protocol_error_not_a_chunk(target, capsys):
    code, doc, err = run(capsys, "--url", target.url, "-c", "2", "-n", "4", "--prompt", "chunks=5 malformed=2")
    s = doc["runs"][0]["summary"]
    assert s["ends"] == {"protocol_error": 4} and s["ok"] == 0
    assert s["chunks"] == 16  # the four good chunks of each stream; the truncated one is not content
    assert s["error_examples"] == [{"error": 'protocol_error: malformed event: {"content":"oops', "count": 4}]
    assert code == 1 and "4 of 4 requests failed" in err


@pytest.mark.parametrize("bad", [b'data: {"content":"oops\n\n', b'data: {"choices":[\n\n',
                                 b'data: [1, 2]\n\n', b'data: {"usage": {"completion_tokens": 3\n\n'])
def test_parser_malformed_events(bad):
    raw = SSE_HEAD + chunked(delta(content="a"), bad, delta(content="b"), USAGE, b"data: [DONE]\n\n")
    res, rec, conn, _ = feed(raw)
    assert res.end == "protocol_error" and res.detail.startswith("malformed event: ")
    assert res.chunks == 2 and conn.reusable  # the body was read to its end: the connection is fine


def test_every_request_failing_exits_1(target, capsys):
    code, doc, err = run(capsys, "--url", target.url, "-c", "2", "-n", "3", "--prompt", "status=503")
    assert code == 1 and doc["failed"] == ["target: 3 of 3 requests failed (100.0% > --max-error-rate 1%)"]
    assert "loadtest: FAILED: target: 3 of 3 requests failed" in err


def test_the_error_threshold(target, capsys, tmp_path):
    data = tmp_path / "half.jsonl"  # requests alternate: one good, one 500
    data.write_text('{"prompt": "chunks=2"}\n{"prompt": "status=500"}\n')
    common = ["--url", target.url, "-c", "1", "-n", "4", "--dataset", str(data)]
    code, doc, _ = run(capsys, *common, "--max-error-rate", "0.5")
    assert doc["runs"][0]["summary"]["ends"] == {"done": 2, "http_error": 2}
    assert code == 0 and doc["failed"] == []
    code, doc, _ = run(capsys, *common, "--max-error-rate", "0.49")
    assert code == 1 and "2 of 4 requests failed (50.0%" in doc["failed"][0]
    assert run(capsys, "--url", target.url, "-n", "2", "--prompt", "chunks=2")[0] == 0


def test_expect_chunks(target, capsys):
    code, doc, _ = run(capsys, "--url", target.url, "-n", "2", "--prompt", "chunks=3", "--expect-chunks", "3")
    assert code == 0 and doc["runs"][0]["summary"]["ends"] == {"done": 2}
    code, doc, _ = run(capsys, "--url", target.url, "-n", "2", "--prompt", "chunks=3", "--expect-chunks", "4")
    s = doc["runs"][0]["summary"]
    assert code == 1 and s["ends"] == {"content_mismatch": 2} and s["ok"] == 0
    assert s["error_examples"][0]["error"] == "content_mismatch: 3 content chunks, 4 expected"


def test_a_missed_slo_exits_1_and_a_met_one_0(target, capsys):
    common = ["--url", target.url, "-c", "2", "-n", "4", "--prompt", "chunks=4 delay=20"]
    code, doc, err = run(capsys, *common, "--slo", "chunk_gap_p50=5ms,e2e_max=60s")
    res = {r["slo"]: r for r in doc["runs"][0]["slo"]}
    assert code == 1 and not res["chunk_gap_p50=5ms"]["met"] and res["e2e_max=60s"]["met"]
    assert res["chunk_gap_p50=5ms"]["value_ms"] >= 20.0 and res["e2e_max=60s"]["limit_ms"] == 60000.0
    assert "SLO chunk_gap_p50=5ms missed" in err
    code, doc, _ = run(capsys, *common, "--slo", "ttft_p99=60s,tpot_mean=60000ms,itl_p90=1e9")
    assert code == 2  # 1e9 is not a limit
    code, doc, _ = run(capsys, *common, "--slo", "ttft_p99=60s,tpot_mean=60000ms,itl_p90=60000000us")
    assert code == 0 and all(r["met"] for r in doc["runs"][0]["slo"])


@pytest.mark.parametrize("argv", [["--slo", "ttft=5ms"], ["--slo", "latency_p50=5ms"], ["--max-error-rate", "2"],
                                  ["--expect-chunks", "-1"], ["--records", "/tmp/x.txt"]])
def test_bad_check_arguments_exit_2(argv, capsys):
    assert cli.main(["--url", "http://127.0.0.1:9/v1", "-n", "1"] + argv) == 2
