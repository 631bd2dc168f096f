"""The load tester end to end against tests/sse_target.py, a server with known timing.

Timing assertions are lower bounds only (a gap is never shorter than the configured delay at the
median); counts are exact.
"""
import json
import os
import socket
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(HERE))

from tests.sse_target import SSETarget  # noqa: E402
from tornado_grok.loadtest import cli  # noqa: E402
from tornado_grok.loadtest.client import Client  # noqa: E402
from tornado_grok.loadtest.shapes import poisson_schedule  # noqa: E402

RUN_KEYS = {"label", "url", "endpoint", "summary", "self", "connections_opened", "timeline", "rate",
            "failed"}
SUMMARY_KEYS = {"started", "finished", "ok", "errors", "errors_by_kind", "ends", "status_counts",
                "dropped_arrivals", "error_examples", "wall_s", "requests_per_s", "chunks",
                "chunks_per_s", "tokens", "tokens_per_s", "ttft_ms", "gap_ms", "total_ms",
                "headers_ms", "start_lag_ms", "output_tokens", "output_tokens_source",
                "output_tokens_per_s", "goodput", "tpot_ms", "itl_ms", "request_output_tokens_per_s"}
STAT_KEYS = {"n", "mean", "min", "p50", "p90", "p99", "max"}
SELF_KEYS = {"cpu_s", "wall_s", "cpu_pct_of_one_core", "peak_interval_cpu_pct", "loop_lag_ms_p99",
             "loop_lag_ms_max", "cpu_wait_s", "cpu_wait_ms_per_wakeup", "rss_mib_start", "rss_mib_max", "bottleneck", "warnings"}


@pytest.fixture(scope="module")
def target():
    t = SSETarget()
    yield t
    t.close()


@pytest.fixture(scope="module")
def target2():
    t = SSETarget()
    yield t
    t.close()


def run_json(capsys, *argv, code=0):
    assert cli.main(list(argv) + ["--json", "--no-progress"]) == code
    return json.loads(capsys.readouterr().out)


def test_known_timing_and_exact_counts(target, capsys):
    doc = run_json(capsys, "--url", target.url, "-c", "3", "-n", "6",
                   "--prompt", "chunks=10 delay=20 size=8")
    s = doc["runs"][0]["summary"]
    assert s["ok"] == s["finished"] == s["started"] == 6 and s["errors"] == 0
    assert s["ends"] == {"done": 6}
    assert s["chunks"] == 60 and s["tokens"] == 60
    assert s["ttft_ms"]["n"] == 6 and s["gap_ms"]["n"] == 54 and s["total_ms"]["n"] == 6
    assert s["gap_ms"]["p50"] >= 20.0
    assert s["total_ms"]["min"] >= 9 * 20.0
    assert s["ttft_ms"]["min"] >= s["headers_ms"]["min"] > 0
    assert s["status_counts"] == {"200": 6}
    assert s["requests_per_s"] > 0 and s["chunks_per_s"] > 0 and s["tokens_per_s"] > 0


def test_reasoning_content_counts_as_a_token(target, capsys):
    doc = run_json(capsys, "--url", target.url, "-c", "1", "-n", "2",
                   "--prompt", "chunks=5 reasoning=3 delay=0")
    s = doc["runs"][0]["summary"]
    assert s["chunks"] == 10 and s["ttft_ms"]["n"] == 2 and s["ends"] == {"done": 2}


def test_request_cap_is_exact_and_connections_are_kept_alive(target, capsys):
    before = target.stats["requests"]
    doc = run_json(capsys, "--url", target.url, "-c", "4", "-n", "17", "--prompt", "chunks=3")
    s = doc["runs"][0]["summary"]
    assert s["started"] == s["finished"] == s["ok"] == 17
    assert target.stats["requests"] - before == 17
    assert doc["runs"][0]["connections_opened"] == 4


def test_duration_cap_stops(target, capsys):
    doc = run_json(capsys, "--url", target.url, "-c", "2", "--duration", "0.4",
                   "--prompt", "chunks=5 delay=20")
    s = doc["runs"][0]["summary"]
    assert doc["config"]["requests"] is None and doc["config"]["duration_s"] == 0.4
    assert s["started"] == s["finished"] >= 2
    assert s["errors"] == 0


def test_default_cap_when_none_given():
    args = cli.build_parser().parse_args(["--url", "http://127.0.0.1:1/v1"])
    cli._check(args, cli.build_parser())
    assert args.duration == cli.DEFAULT_DURATION


def test_open_loop_issues_exactly_the_capped_arrivals(target, capsys):
    doc = run_json(capsys, "--url", target.url, "--rate", "400", "--seed", "7", "-n", "25",
                   "--prompt", "chunks=2")
    s = doc["runs"][0]["summary"]
    assert doc["config"]["mode"] == "open" and doc["config"]["seed"] == 7
    assert s["started"] == s["ok"] == 25 and s["dropped_arrivals"] == 0
    assert s["start_lag_ms"]["n"] == 25 and s["start_lag_ms"]["min"] >= 0


def test_poisson_schedule_is_repeatable():
    a = poisson_schedule(50.0, seed=42, n=200)
    assert a == poisson_schedule(50.0, seed=42, n=200)
    assert a != poisson_schedule(50.0, seed=43, n=200)
    assert len(a) == 200 and all(x < y for x, y in zip(a, a[1:]))
    by_time = poisson_schedule(50.0, seed=42, duration=1.0)
    assert by_time == [t for t in a if t < 1.0]
    many = poisson_schedule(100.0, seed=1, n=20000)
    assert 0.0095 < many[-1] / len(many) < 0.0105  # mean inter-arrival ~ 1/rate


@pytest.mark.parametrize("prompt, kind", [
    ("chunks=5 error_at=2", "error_event"),
    ("chunks=5 drop_at=2", "disconnected"),
    ("status=503", "http_error"),
    ("chunks=3 no_done=1", "no_done"),
])
def test_error_classification(target, capsys, prompt, kind):
    doc = run_json(capsys, "--url", target.url, "-c", "2", "-n", "4", "--prompt", prompt, code=1)
    s = doc["runs"][0]["summary"]
    assert s["ends"] == {kind: 4} and s["errors_by_kind"] == {kind: 4} and s["ok"] == 0
    assert len(s["error_examples"]) == 1 and s["error_examples"][0]["count"] == 4
    assert s["error_examples"][0]["error"].startswith(kind)


def test_timeout(target, capsys):
    doc = run_json(capsys, "--url", target.url, "-c", "1", "-n", "1", "--timeout", "0.2",
                   "--prompt", "head_delay=3000", code=1)
    assert doc["runs"][0]["summary"]["ends"] == {"timeout": 1}


def test_connect_error(capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    doc = run_json(capsys, "--url", f"http://127.0.0.1:{port}/v1", "-c", "2", "-n", "3", code=1)
    assert doc["runs"][0]["summary"]["ends"] == {"connect_error": 3}


def test_non_streaming(target, capsys):
    doc = run_json(capsys, "--url", target.url, "-c", "2", "-n", "4", "--no-stream",
                   "--prompt", "chunks=4 delay=5")
    s = doc["runs"][0]["summary"]
    assert s["ends"] == {"done": 4} and s["tokens"] == 16 and s["chunks"] == 4
    assert s["ttft_ms"]["min"] >= 20.0


@pytest.mark.parametrize("url", ["http://example.com/v1", "http://10.0.0.1:8000/v1",
                                 "http://0.0.0.0:8000/v1", "http://[2001:db8::1]/v1"])
def test_non_loopback_targets_are_refused(monkeypatch, capsys, url):
    async def no_connect(self):
        raise AssertionError("a refused target was contacted")
    monkeypatch.setattr(Client, "_connect", no_connect)
    assert cli.main(["--url", url, "-n", "1"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert cli.main(["--url", "http://127.0.0.1:1/v1", "--compare", url, "-n", "1"]) == 2


def test_loopback_recognition():
    for url in ("http://127.0.0.1:8000/v1", "http://127.9.8.7/v1", "http://localhost:1/v1",
                "http://[::1]:8000/v1", "https://LOCALHOST/v1"):
        assert cli.is_loopback(url), url
    for url in ("http://localhost.example.com/v1", "http://128.0.0.1/v1", "http://[::2]/v1"):
        assert not cli.is_loopback(url), url


def test_bad_arguments_exit_2(capsys):
    assert cli.main(["--concurrency", "0"]) == 2
    assert cli.main(["--rate", "-1"]) == 2
    assert cli.main(["--url", "ftp://127.0.0.1/x", "-n", "1"]) == 2


def test_json_schema(target, capsys):
    doc = run_json(capsys, "--url", target.url, "-c", "2", "-n", "4", "--prompt", "chunks=3")
    assert doc["schema"] == "tornado_grok.loadtest/1"
    assert set(doc) == {"schema", "generated_at", "config", "runs", "comparison", "sweep", "warnings",
                        "failed"}
    assert doc["comparison"] is None and len(doc["runs"]) == 1
    run = doc["runs"][0]
    assert set(run) == RUN_KEYS
    assert set(run["summary"]) == SUMMARY_KEYS
    for key in ("ttft_ms", "gap_ms", "total_ms", "headers_ms"):
        assert set(run["summary"][key]) == STAT_KEYS
    assert run["summary"]["start_lag_ms"] is None  # closed loop: no schedule
    assert set(run["self"]) == SELF_KEYS
    assert run["timeline"]["fields"][0] == "t_s" and run["timeline"]["rows"]


def test_table_output(target, capsys):
    assert cli.main(["--url", target.url, "-c", "2", "-n", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for word in ("TTFT", "chunk gap", "TPOT", "ITL", "e2e", "req/s", "chunks/s", "tokens/s",
                 "load tester: cpu"):
        assert word in out


def test_progress_line_on_stderr(target, capsys):
    assert cli.main(["--url", target.url, "-c", "1", "--duration", "0.6", "--progress",
                     "--prompt", "chunks=2 delay=10"]) == 0
    err = capsys.readouterr().err
    assert "\r[target]" in err and "req/s" in err


def test_html_report(target, capsys, tmp_path):
    path = tmp_path / "report.html"
    assert cli.main(["--url", target.url, "-c", "2", "-n", "6", "--prompt", "chunks=5 delay=2",
                     "--html", str(path), "--no-progress", "--compare", target.url]) == 0
    page = path.read_text()
    assert page.count("<svg") >= 4
    import re
    import xml.etree.ElementTree as ET
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)  # well-formed
    assert "<rect" in page and "<polyline" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "Time to first token" in page and "Open streams" in page


def test_compare_prints_added_latency_and_ratio(target, target2, capsys):
    assert cli.main(["--url", target.url, "--compare", target2.url, "-c", "2", "-n", "6",
                     "--prompt", "chunks=3 delay=1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[compare]" in out and "added TTFT p50" in out
    assert "throughput ratio target/compare" in out and "x req/s" in out
    doc = run_json(capsys, "--url", target.url, "--compare", target2.url, "-c", "2", "-n", "6",
                   "--prompt", "chunks=3")
    cmp_ = doc["comparison"]
    assert [r["label"] for r in doc["runs"]] == ["target", "compare"]
    assert cmp_["baseline"] == target2.url and cmp_["requests_per_s_ratio"] > 0
    assert isinstance(cmp_["ttft_p50_added_ms"], float)


@pytest.mark.parametrize("entry", [["-m", "tornado_grok.loadtest"], ["run.py", "loadtest"]])
def test_entry_points_refuse_remote(entry):
    import subprocess
    root = os.path.dirname(HERE)
    p = subprocess.run([sys.executable] + entry + ["--url", "http://192.0.2.1/v1"],
                       cwd=root, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "refusing" in p.stderr


def test_warmup_is_not_recorded(target, capsys):
    before = target.stats["requests"]
    doc = run_json(capsys, "--url", target.url, "-c", "2", "-n", "5", "--warmup", "3",
                   "--prompt", "chunks=2")
    assert doc["runs"][0]["summary"]["started"] == 5
    assert target.stats["requests"] - before == 8



@pytest.mark.parametrize("extra", [["-c", "3"], ["--rate", "50", "--seed", "1"]])
def test_stop_event_ends_a_run_early_and_cancels_streams(target, extra):
    """What Ctrl-C does: stop issuing, end the open streams, keep what was measured."""
    import asyncio
    from tornado_grok.loadtest.client import Target
    from tornado_grok.loadtest.shapes import Shape, run_load

    args = cli.build_parser().parse_args(["--url", target.url, "--duration", "60"] + extra)
    shape = Shape(concurrency=args.concurrency, rate=args.rate, seed=args.seed, duration=60)

    async def go():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        return await run_load(Target(target.url, prompt="chunks=100 delay=100"), shape, stop=stop)
    rec, me, _ = asyncio.run(go())
    assert rec.started == rec.finished >= 1
    assert set(rec.ends) == {"cancelled"}


def test_ramp_up_and_connect_limit(target, capsys):
    doc = run_json(capsys, "--url", target.url, "-c", "6", "-n", "12", "--ramp-up", "0.2",
                   "--connect-limit", "2", "--prompt", "chunks=2")
    assert doc["config"]["ramp_up_s"] == 0.2 and doc["config"]["connect_limit"] == 2
    assert doc["runs"][0]["summary"]["ok"] == 12


def test_compare_in_alternating_rounds(target, target2, capsys, tmp_path):
    b1, b2 = target.stats["requests"], target2.stats["requests"]
    html = tmp_path / "r.html"
    doc = run_json(capsys, "--url", target.url, "--compare", target2.url, "--rounds", "3",
                   "-c", "2", "-n", "7", "--prompt", "chunks=4", "--html", str(html))
    assert doc["config"]["rounds"] == 3 and doc["comparison"]["order"].startswith("alternating")
    for run in doc["runs"]:
        s = run["summary"]
        assert s["started"] == s["ok"] == 7 and s["chunks"] == 28 and s["tokens"] == 28
        assert s["ttft_ms"]["n"] == 7 and s["gap_ms"]["n"] == 21
        times = [row[0] for row in run["timeline"]["rows"]]
        assert times == sorted(times) and run["timeline"]["rows"][-1][1] == 7
        assert run["self"]["wall_s"] > 0
    assert target.stats["requests"] - b1 == 7 and target2.stats["requests"] - b2 == 7
    assert "<svg" in html.read_text()


def test_rounds_need_compare_and_enough_requests(target):
    assert cli.main(["--url", target.url, "--rounds", "2", "-n", "4"]) == 2
    assert cli.main(["--url", target.url, "--compare", target.url, "--rounds", "5", "-n", "4"]) == 2


def test_round_shapes_split_the_caps():
    from tornado_grok.loadtest.shapes import Shape
    shape = Shape(rate=10.0, seed=5, requests=10, duration=9.0)
    parts = [cli._round_shape(shape, k, 3) for k in range(3)]
    assert [p.requests for p in parts] == [4, 3, 3]
    assert [p.duration for p in parts] == [3.0, 3.0, 3.0]
    assert [p.seed for p in parts] == [5, 6, 7]
    assert cli._round_shape(shape, 0, 1) is shape


def test_a_loopback_name_resolving_elsewhere_is_refused(monkeypatch, capsys):
    import tornado_grok.loadtest.client as client_mod
    monkeypatch.setattr(client_mod, "_resolve", lambda host, port: "192.0.2.7")

    async def no_connect(self):
        raise AssertionError("a refused target was contacted")
    monkeypatch.setattr(Client, "_connect", no_connect)
    assert cli.main(["--url", "http://localhost:8000/v1", "-n", "1"]) == 2
    assert "resolves to 192.0.2.7" in capsys.readouterr().err
