"""What a new user stumbled on: the default prompt gives real chunk gaps (on
tests/sse_target.py and on the bundled mock), the tester's own lag or CPU wait is a warning only
when it is a noticeable share of what was measured, and --rounds keeps its connections (and the
warm-up's) across rounds."""
import json
import os
import shutil
import subprocess

import pytest

from tests.mock_helpers import start_mock
from tests.sse_target import SSETarget
from tornado_grok.loadtest import cli, selfcheck


@pytest.fixture(scope="module")
def target():
    t = SSETarget()
    yield t
    t.close()


def run(capsys, *argv):
    assert cli.main(list(argv) + ["--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_default_prompt_has_real_gaps(target, capsys):
    doc = run(capsys, "--url", target.url, "-c", "2", "-n", "2")
    s = doc["runs"][0]["summary"]
    assert doc["config"]["prompt"] == cli.DEFAULT_PROMPT == "chunks=20 delay=10 size=8"
    assert s["chunks"] == 40 and s["gap_ms"]["p50"] >= 10.0 and s["tpot_ms"]["min"] >= 10.0


def test_the_default_prompt_on_the_bundled_mock(capsys):
    with start_mock() as mock:
        doc = run(capsys, "--url", mock.base, "--key", "k", "-c", "2", "-n", "2")
    s = doc["runs"][0]["summary"]
    # The mock keeps a schedule (chunk k at k * 10 ms), so the chunks after a late one come close
    # together (on a busy machine, half of them may): real gaps (not the 0 of delay=0), and the
    # whole answer at least 19 gaps long.
    assert s["ends"] == {"done": 2} and s["chunks"] == 40 and s["gap_ms"]["max"] >= 5.0
    assert s["total_ms"]["min"] >= 190.0


NODE_MOCK = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "shared", "bench", "mock_sse.js")


@pytest.mark.skipif(not (shutil.which("node") and os.path.exists(NODE_MOCK)),
                    reason="the shared harness's mock (../shared/bench/mock_sse.js) or node is absent")
def test_the_default_prompt_on_the_shared_harness_mock(capsys):
    proc = subprocess.Popen(["node", NODE_MOCK, "0"], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, MOCK_HOST="127.0.0.1"))
    try:
        line = proc.stdout.readline()  # "mock_sse listening on http://127.0.0.1:PORT"
        assert "listening on http://127.0.0.1:" in line, line
        doc = run(capsys, "--url", line.split("listening on ")[1].strip() + "/v1", "-c", "2", "-n", "2")
    finally:
        proc.terminate()
        proc.wait()
    s = doc["runs"][0]["summary"]
    # Chunks a stalled client reads together have gaps of 0 between them: as above.
    assert s["ends"] == {"done": 2} and s["chunks"] == 40 and s["gap_ms"]["max"] >= 5.0
    assert s["total_ms"]["min"] >= 190.0


def monitor(lags_ms, wall=10.0, waited=None, wakeups=None, monkeypatch=None):
    """A SelfMonitor with known lags and, through the schedstat reading, a known wait for a CPU."""
    m = selfcheck.SelfMonitor(0.25)
    m.wall0 -= wall
    m.lags_ms = list(lags_ms)
    m.interval_cpu = [5.0] * 40
    if waited is not None:
        m.wait0, m.slices0 = 100.0, 1000
        monkeypatch.setattr(selfcheck, "_schedstat", lambda: (100.0 + waited, 1000 + wakeups))
    return m


def test_lag_is_a_warning_only_when_it_matters():
    assert monitor([3.0] * 100).report(scale_ms=10.0)["warnings"] == []      # timer noise beside 10 ms gaps
    assert monitor([30.0] * 100).report(scale_ms=2000.0)["warnings"] == []   # 30 ms beside a 2 s TTFT
    w = monitor([30.0] * 100).report(scale_ms=10.0)["warnings"]              # 30 ms beside 10 ms gaps
    assert len(w) == 1 and w[0].startswith("event-loop lag p99 30.0 ms")
    assert monitor([30.0] * 100).report()["warnings"]                        # nothing to compare: 20 ms
    assert monitor([12.0] * 100).report(scale_ms=1.0)["warnings"]            # above the 10 ms floor
    assert not monitor([8.0] * 100).report(scale_ms=1.0)["warnings"]         # below it


def test_cpu_wait_is_a_warning_only_when_each_wakeup_waits_long(monkeypatch):
    # 3 s of 10 waiting, but spread over 30,000 wake-ups (0.1 ms each): not worth a warning.
    assert monitor([1.0] * 10, waited=3.0, wakeups=30000, monkeypatch=monkeypatch).report(scale_ms=10.0)[
        "warnings"] == []
    # The same 3 s over 300 wake-ups: 10 ms per wake-up, as large as the gaps measured.
    w = monitor([1.0] * 10, waited=3.0, wakeups=300, monkeypatch=monkeypatch).report(scale_ms=10.0)
    assert len(w["warnings"]) == 1 and "(10.0 ms per wake-up)" in w["warnings"][0]
    assert w["cpu_wait_ms_per_wakeup"] == 10.0
    # 10 ms per wake-up beside a 1 s TTFT: not a warning; a short wait overall: not a warning.
    assert monitor([1.0] * 10, waited=3.0, wakeups=300, monkeypatch=monkeypatch).report(scale_ms=1000.0)[
        "warnings"] == []
    assert monitor([1.0] * 10, waited=0.5, wakeups=10, monkeypatch=monkeypatch).report(scale_ms=10.0)[
        "warnings"] == []


def test_a_light_run_prints_no_warning(target, capsys):
    # 1.5 s: long enough to be judged (runs under a second are not), light enough to matter nowhere.
    doc = run(capsys, "--url", target.url, "-c", "2", "-d", "1.5")
    me = doc["runs"][0]["self"]
    # The one warning a light run may truly deserve: a machine so oversubscribed that each wake-up
    # of the tester waited over a millisecond for a CPU (then the figures do include that wait).
    starved = (me.get("cpu_wait_ms_per_wakeup") or 0) > 1.0 and \
        me["cpu_wait_s"] > selfcheck.WAIT_WARN_SHARE * me["wall_s"]
    assert [w for w in doc["warnings"] if not (starved and "for a CPU" in w)] == []
    assert me["cpu_pct_of_one_core"] < selfcheck.CPU_WARN_PCT


def test_rounds_keep_connections_and_the_warm_up(capsys):
    a, b = SSETarget(), SSETarget()
    try:
        doc = run(capsys, "--url", a.url, "--compare", b.url, "-c", "2", "-n", "6", "--rounds", "3",
                  "--warmup", "2", "--prompt", "chunks=2")
        assert [r["connections_opened"] for r in doc["runs"]] == [0, 0]  # the warm-up's, kept
        assert len(a.stats["peers"]) == 2 and len(b.stats["peers"]) == 2  # TCP connections seen
        assert a.stats["requests"] == b.stats["requests"] == 8
        assert [r["summary"]["ok"] for r in doc["runs"]] == [6, 6]
        doc = run(capsys, "--url", a.url, "--compare", b.url, "-c", "2", "-n", "6", "--rounds", "3",
                  "--prompt", "chunks=2")
        assert [r["connections_opened"] for r in doc["runs"]] == [2, 2]  # round 1 opens them, once
    finally:
        a.close()
        b.close()
