"""The load tester's statistics on known data: nearest-rank percentiles, chunk gaps (between chunks
of one stream, not from its first token), the summary's rates, the --compare figures' direction, the
bottleneck warning, and every plot of the HTML report, by name."""

import math
import re

import pytest

from tornado_grok.loadtest import html, report, selfcheck
from tornado_grok.loadtest.client import Result
from tornado_grok.loadtest.stats import Recorder, describe, percentile, summarize


def nearest_rank(values, p):
    """The definition, independently: the smallest sample with at least p% of the samples at or below it."""
    s = sorted(values)
    return next(x for x in s if sum(v <= x for v in s) >= p / 100.0 * len(s))


@pytest.mark.parametrize("values, p, expected", [
    ([15, 20, 35, 40, 50], 5, 15), ([15, 20, 35, 40, 50], 30, 20), ([15, 20, 35, 40, 50], 40, 20),
    ([15, 20, 35, 40, 50], 50, 35), ([15, 20, 35, 40, 50], 100, 50), ([15, 20, 35, 40, 50], 0, 15),
    ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 25, 7), ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 50, 8),
    ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 75, 15), ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 90, 16),
    ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 99, 20), ([7], 50, 7), ([1, 2], 50, 1), ([1, 2], 51, 2),
])
def test_percentile_is_the_nearest_rank(values, p, expected):
    assert percentile(sorted(values), p) == expected


def test_percentile_matches_the_definition_on_every_small_sample():
    for n in range(1, 13):
        values = [float(v * v % 17) for v in range(n)]
        for p in (1, 10, 25, 33, 50, 66, 75, 90, 99, 100):
            assert percentile(sorted(values), p) == nearest_rank(values, p), (n, p)


def test_describe_on_known_samples():
    samples = [float(v) for v in (10, 1, 9, 2, 8, 3, 7, 4, 6, 5)]
    assert describe(samples) == {"n": 10, "mean": 5.5, "min": 1.0, "p50": 5.0, "p90": 9.0, "p99": 10.0,
                                 "max": 10.0}
    assert describe([]) is None
    assert describe([2.0004, 2.0016]) == {"n": 2, "mean": 2.001, "min": 2.0, "p50": 2.0, "p90": 2.002,
                                          "p99": 2.002, "max": 2.002}


def stream(rec, t0, events, end="done", headers=None, tokens=None, status=200, detail=None):
    """One request: started at t0, content events at the given times (s), ended at the last one."""
    res = Result()
    res.t0 = t0
    res.t_headers = headers if headers is not None else 0.0
    rec.started_one()
    for t in events:
        rec.content_event(res, t)
    res.t_end = events[-1] if events else t0 + 1.0
    res.end, res.status, res.tokens, res.detail = end, status, tokens, detail
    rec.finished_one(res)
    return res


def test_gaps_are_between_chunks_of_one_stream():
    rec = Recorder()
    rec.t_start = rec.t_last_end = 100.0
    a = stream(rec, 100.0, [100.5, 101.5, 101.75, 104.75], headers=100.25)
    stream(rec, 100.1, [100.2, 100.3], headers=100.15)
    assert a.chunks == 4 and rec.chunks == 6
    # 1000, 250 and 3000 ms in the first stream, 100 in the second: never measured from the first
    # token (that would be 1000, 1250, 4250) and never across streams.
    assert sorted(round(g, 6) for g in rec.gap_ms) == [100.0, 250.0, 1000.0, 3000.0]
    gaps = describe(rec.gap_ms)
    assert gaps["max"] == 3000.0 and gaps["p50"] == 250.0
    assert sorted(round(t, 6) for t in rec.ttft_ms) == [100.0, 500.0]
    assert sorted(round(t, 6) for t in rec.headers_ms) == [50.0, 250.0]
    assert sorted(round(t, 6) for t in rec.total_ms) == [200.0, 4750.0]


def test_summary_counts_rates_and_errors():
    rec = Recorder()
    rec.t_start = rec.t_last_end = 0.0
    stream(rec, 0.0, [0.5, 1.0], tokens=5)
    stream(rec, 0.0, [1.0, 2.0, 4.0], tokens=7)
    stream(rec, 1.0, [1.5], end="error_event", status=200)
    stream(rec, 1.0, [], end="http_error", status=500)
    stream(rec, 1.0, [], end="cancelled")
    s = summarize(rec)
    assert s["wall_s"] == 4.0
    assert (s["started"], s["finished"], s["ok"], s["errors"]) == (5, 5, 2, 2)
    assert s["errors_by_kind"] == {"error_event": 1, "http_error": 1}
    assert s["requests_per_s"] == 0.5 and s["chunks"] == 6 and s["chunks_per_s"] == 1.5
    assert s["tokens"] == 12 and s["tokens_per_s"] == 3.0
    assert s["total_ms"]["n"] == 2 and s["ttft_ms"]["n"] == 3  # total only for complete answers
    assert s["status_counts"] == {"200": 4, "500": 1}
    no_tokens = Recorder()
    stream(no_tokens, no_tokens.t_start, [no_tokens.t_start + 1])
    assert summarize(no_tokens)["tokens"] is None and summarize(no_tokens)["tokens_per_s"] is None


def test_error_examples_are_counted_and_capped():
    rec = Recorder()
    for i in range(8):
        stream(rec, 0.0, [], end="http_error", status=500, detail="status %d" % (i % 6))
    stream(rec, 0.0, [], end="timeout")
    assert rec.error_examples == {"http_error: status 0": 2, "http_error: status 1": 2, "http_error: status 2": 1,
                                  "http_error: status 3": 1, "http_error: status 4": 1}  # the first five
    other = Recorder()
    stream(other, 0.0, [], end="timeout")
    stream(other, 0.0, [], end="http_error", status=500, detail="status 0")
    rec.merge(other)
    assert rec.error_examples["http_error: status 0"] == 3 and "timeout" not in rec.error_examples
    assert rec.ends == {"http_error": 9, "timeout": 2}


def test_merged_rounds_add_up():
    a, b = Recorder(), Recorder()
    a.t_start = a.t_last_end = 0.0
    b.t_start = b.t_last_end = 10.0
    stream(a, 0.0, [1.0, 2.0], tokens=2)
    stream(b, 10.0, [10.5, 13.0], tokens=3)
    a.merge(b)
    assert a.wall_s() == 5.0 and a.finished == 2 and a.tokens == 5 and a.chunks == 4
    assert sorted(a.gap_ms) == [1000.0, 2500.0]


def doc_for(primary_summary, baseline_summary):
    def run(label, url, summary):
        return {"label": label, "url": url, "endpoint": url[7:], "summary": summary,
                "self": {"warnings": []}}
    return run("target", "http://gw/v1", primary_summary), run("compare", "http://mock/v1", baseline_summary)


def test_comparison_direction():
    slow = {"ttft_ms": {"p50": 12.0, "p99": 30.0}, "gap_ms": {"p50": 2.0}, "total_ms": {"p50": 100.0},
            "requests_per_s": 50.0, "chunks_per_s": 1000.0}
    fast = {"ttft_ms": {"p50": 10.0, "p99": 20.0}, "gap_ms": {"p50": 1.5}, "total_ms": {"p50": 90.0},
            "requests_per_s": 200.0, "chunks_per_s": 4000.0}
    c = report.comparison(*doc_for(slow, fast))
    # Positive ms: --url slower; ratio url / compare: below 1 when --url is slower.
    assert (c["primary"], c["baseline"]) == ("http://gw/v1", "http://mock/v1")
    assert c["ttft_p50_added_ms"] == 2.0 and c["ttft_p99_added_ms"] == 10.0
    assert c["gap_p50_added_ms"] == 0.5 and c["total_p50_added_ms"] == 10.0
    assert c["requests_per_s_ratio"] == 0.25 and c["chunks_per_s_ratio"] == 0.25
    assert report.comparison(*doc_for(fast, slow))["requests_per_s_ratio"] == 4.0
    empty = dict(fast, ttft_ms=None, requests_per_s=0.0)
    c = report.comparison(*doc_for(slow, empty))
    assert c["ttft_p50_added_ms"] is None and c["requests_per_s_ratio"] is None
    assert "1 rounds" not in c["order"] and "sequential" in c["order"]
    assert "3 rounds" in report.comparison(*doc_for(slow, fast), rounds=3)["order"]


def check(wall, cpu, intervals=(), wait=None):
    """A SelfMonitor whose run took `wall` s and `cpu` s of CPU (known data, not this process's)."""
    sc = selfcheck.SelfMonitor(0.5)
    now_wall, now_cpu = selfcheck.time.perf_counter(), selfcheck.time.process_time()
    sc.wall0, sc.cpu0 = now_wall - wall, now_cpu - cpu
    sc.interval_cpu = list(intervals)
    sc.wait0 = None if wait is None else (selfcheck.runqueue_wait_s() or 0.0) - wait
    return sc.report()


def test_the_bottleneck_warning_fires_when_the_tester_is_the_bottleneck():
    busy = check(10.0, 9.8)
    assert busy["bottleneck"] and busy["cpu_pct_of_one_core"] >= 97
    assert any("may be the bottleneck" in w and "98% of one core" in w for w in busy["warnings"])
    idle = check(10.0, 1.0, intervals=[10.0] * 20)
    assert not idle["bottleneck"] and idle["warnings"] == []
    # Not busy on average, but above the threshold in most intervals: still the bottleneck.
    spiky = check(10.0, 5.0, intervals=[95.0] * 11 + [5.0] * 9)
    assert spiky["bottleneck"] and any("11 of 20 intervals" in w for w in spiky["warnings"])
    half = check(10.0, 5.0, intervals=[95.0] * 10 + [5.0] * 10)
    assert not half["bottleneck"]
    assert check(0.5, 0.5)["warnings"] == []  # too short to judge
    assert check(selfcheck.MIN_WALL_S + 0.05, selfcheck.MIN_WALL_S)["bottleneck"]
    edge = check(10.0, 10.0 * selfcheck.CPU_WARN_PCT / 100.0 - 0.05, intervals=[selfcheck.CPU_WARN_PCT] * 4)
    assert not edge["bottleneck"]  # at the threshold, not above it


def test_merged_self_reports_keep_every_warning_once():
    a, b = check(10.0, 9.8), check(10.0, 1.0)
    m = selfcheck.merge_reports(a, b)
    assert m["bottleneck"] and m["warnings"] == a["warnings"]
    assert m["wall_s"] == pytest.approx(a["wall_s"] + b["wall_s"], abs=0.01)
    assert m["cpu_pct_of_one_core"] == pytest.approx(54.0, abs=0.5)


PLOTS = ["Time to first token", "Gap between content chunks", "TTFT over time (p50, p99)",
         "TPOT over time (p50, p99)", "Failed requests per second", "Chunks per second",
         "Completed requests per second", "Open streams", "Load tester CPU (% of one core)"]


def test_every_plot_is_in_the_html_report():
    recs = []
    for base in (0.0, 100.0):
        rec = Recorder()
        rec.t_start = rec.t_last_end = base
        for k in range(5):
            stream(rec, base + k * 0.1, [base + k * 0.1 + 0.05 * j for j in range(1, 6)], tokens=5)
            rec.timeline.append((0.5 * (k + 1), k + 1, k + 1, 5 * (k + 1), 5 * (k + 1), 1, 20.0 + k))
        recs.append(rec)

    class T:
        url = "http://127.0.0.1:1/v1"
        host, port, path = "127.0.0.1", 1, "/v1/chat/completions"

    me = check(2.0, 0.2)
    runs = [report.run_entry(label, T, rec, me, 1) for label, rec in zip(("target", "compare"), recs)]
    config = {"shape": "closed loop", "prompt": "p", "stream": True, "model": "m", "requests": 5,
              "duration_s": None, "timeout_s": 60.0}
    page = html.render(report.document(config, runs), recs)
    titles = re.findall(r"<svg\b.*?<text[^>]*>([^<]+)</text>", page, re.S)
    assert [html_unescape(t) for t in titles] == PLOTS
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        assert "no samples" not in svg and "no data" not in svg
    assert page.count("<rect") >= 2 and page.count("<polyline") >= 8  # two series in each line plot


def html_unescape(text):
    import html as std
    return std.unescape(text)


def test_rounding_keeps_three_decimals():
    assert describe([1.23456])["p50"] == 1.235 and math.isclose(describe([1.0, 2.0])["mean"], 1.5)


def known_doc(rounds=1, lag=False):
    """A two-target document from known samples, as cli.py builds it."""
    class T:
        def __init__(self, url, port):
            self.url, self.host, self.port, self.path = url, "127.0.0.1", port, "/v1/chat/completions"

    runs = []
    for label, (url, port), step in (("target", ("http://127.0.0.1:8000/api/v1", 8000), 0.5),
                                      ("compare", ("http://127.0.0.1:9000/v1", 9000), 0.25)):
        rec = Recorder()
        rec.t_start = rec.t_last_end = 0.0
        stream(rec, 0.0, [step, 2 * step, 4 * step], headers=step / 2, tokens=3)
        stream(rec, 0.0, [step, 3 * step], headers=step / 2, tokens=2)
        stream(rec, 0.0, [], end="http_error", status=503, detail="HTTP 503:  busy\n now")
        if lag:
            rec.start_lag_ms.extend([1.0, 2.0, 3.0])
            rec.dropped = 2
        me = {"cpu_pct_of_one_core": 12.4, "peak_interval_cpu_pct": 40.0, "loop_lag_ms_p99": 1.25,
              "cpu_wait_s": 0.5 if label == "target" else None, "rss_mib_max": 30.2,
              "warnings": ["busy"] if label == "target" else []}
        runs.append(report.run_entry(label, T(url, port), rec, me, 2))
    config = {"shape": "closed loop, 2 clients", "prompt": "chunks=3", "stream": True, "model": "m",
              "requests": 3, "duration_s": 5.0, "timeout_s": 60.0, "rounds": rounds}
    return report.document(config, runs)


EXPECTED_TABLE = """\
tornado_grok loadtest: closed loop, 2 clients; prompt 'chunks=3'; stream; model m
caps: 3 requests or 5 s; per-request timeout 60 s

[target] POST http://127.0.0.1:8000/v1/chat/completions
  requests   3 finished, 2 ok, 1 errors in 2.00 s; 2 connections opened
  throughput 1.0 req/s   2.5 chunks/s   2.5 tokens/s   (5 chunks, 5 tokens)
  latency ms         p50       p90       p99       max        n
  headers         250.00    250.00    250.00    250.00        2
  TTFT            500.00    500.00    500.00    500.00        2
  chunk gap      1000.00   1000.00   1000.00   1000.00        3
  TPOT            750.00   1000.00   1000.00   1000.00        2
  ITL             750.00   1000.00   1000.00   1000.00        2
  e2e            1500.00   2000.00   2000.00   2000.00        2
  (chunk gap: between content events, vLLM's ITL; TPOT: vLLM's (e2e - TTFT) /
  (tokens - 1); ITL: guidellm's (last - first token) / (tokens - 1); e2e: whole answer)
  output     5 tokens (usage), 2.5 tokens/s
  ends       done 2, http_error 1
  statuses   503: 1
    e.g. http_error: HTTP 503: busy now  (x1)
  load tester: cpu 12% of one core (peak 40%), loop lag p99 1.2 ms, waited for a CPU 0.50 s, rss 30 MiB
  WARNING: busy

[compare] POST http://127.0.0.1:9000/v1/chat/completions
  requests   3 finished, 2 ok, 1 errors in 1.00 s; 2 connections opened
  throughput 2.0 req/s   5.0 chunks/s   5.0 tokens/s   (5 chunks, 5 tokens)
  latency ms         p50       p90       p99       max        n
  headers         125.00    125.00    125.00    125.00        2
  TTFT            250.00    250.00    250.00    250.00        2
  chunk gap       500.00    500.00    500.00    500.00        3
  TPOT            375.00    500.00    500.00    500.00        2
  ITL             375.00    500.00    500.00    500.00        2
  e2e             750.00   1000.00   1000.00   1000.00        2
  (chunk gap: between content events, vLLM's ITL; TPOT: vLLM's (e2e - TTFT) /
  (tokens - 1); ITL: guidellm's (last - first token) / (tokens - 1); e2e: whole answer)
  output     5 tokens (usage), 5.0 tokens/s
  ends       done 2, http_error 1
  statuses   503: 1
    e.g. http_error: HTTP 503: busy now  (x1)
  load tester: cpu 12% of one core (peak 40%), loop lag p99 1.2 ms, waited for a CPU - s, rss 30 MiB

comparison (sequential: target first, then compare, same parameters): [target] http://127.0.0.1:8000/api/v1 vs [compare] http://127.0.0.1:9000/v1
  added TTFT p50 +250.00 ms, p99 +250.00 ms; chunk gap p50 +500.00 ms; total p50 +750.00 ms
  throughput ratio target/compare: 0.500x req/s, 0.500x chunks/s
"""


def test_the_table_on_known_data():
    doc = known_doc()
    assert doc["warnings"] == ["target: busy"] and doc["schema"] == "tornado_grok.loadtest/1"
    assert report.table(doc) == EXPECTED_TABLE


def test_the_table_of_an_open_loop_and_of_missing_figures():
    doc = known_doc(rounds=2, lag=True)
    text = report.table(doc)
    assert "  schedule   requests started 2.00 ms (p50), 3.00 ms (p99), 3.00 ms (max) after their Poisson" in text
    assert "  dropped    2 arrivals (max in-flight reached)" in text
    assert "comparison (alternating: 2 rounds of target then compare, each with 1/2 of the caps)" in text
    for run in doc["runs"]:
        run["summary"].update(tokens=None, tokens_per_s=None, requests_per_s=None, ttft_ms=None)
        run["self"]["peak_interval_cpu_pct"] = None
    doc["config"].update(requests=None, duration_s=None)
    doc["comparison"] = report.comparison(*doc["runs"])
    text = report.table(doc)
    assert "caps: ; per-request timeout 60 s" in text
    assert "  throughput - req/s   2.5 chunks/s   - tokens/s   (5 chunks, - tokens)" in text
    assert "  TTFT                 -         -         -         -        0" in text
    assert "(peak -%)" in text
    assert "  added TTFT p50 n/a, p99 n/a;" in text
    assert "throughput ratio target/compare: n/a req/s, 0.500x chunks/s" in text


def test_clock_open_count_ticks_and_merged_timelines():
    rec = Recorder()
    rec.t_start = rec.t_last_end = -5.0
    rec.start_clock()  # the run starts now (after a warm-up): both ends of the wall clock move
    assert rec.t_start == rec.t_last_end and rec.t_start > 0
    rec.started, rec.finished = 7, 3
    assert rec.open == 4
    rec.t_start -= 1.5  # as if the run began 1.5 s ago
    rec.chunks, rec.tokens, rec.ends = 10, 20, {"done": 2, "timeout": 1}
    rec.tick(55.5)
    (t, finished, done, chunks, tokens, open_, cpu), = rec.timeline
    assert 1.5 <= t < 60 and (finished, done, chunks, tokens, open_, cpu) == (3, 2, 10, 20, 4, 55.5)
    a, b = Recorder(), Recorder()
    a.timeline = [(1.0, 1, 1, 5, 5, 2, 10.0), (2.0, 3, 2, 12, 12, 1, 20.0)]
    a.finished, a.ends, a.chunks, a.tokens = 3, {"done": 2}, 12, 15
    b.timeline = [(0.5, 1, 2, 4, 7, 3, 30.0)]
    a.merge(b)
    # The later round's rows continue the earlier one's time and running totals.
    assert a.timeline[-1] == (2.5, 4, 4, 16, 22, 3, 30.0)


def test_summary_of_a_run_with_no_complete_answer():
    rec = Recorder()
    rec.t_start = rec.t_last_end = 0.0
    stream(rec, 0.0, [1.12345], end="timeout")
    s = summarize(rec)
    assert s["ok"] == 0 and s["requests_per_s"] == 0.0 and s["total_ms"] is None
    assert s["wall_s"] == 1.123 and s["chunks_per_s"] == round(1 / 1.12345, 3)
    assert describe([1.0, 2.0, 2.0])["mean"] == 1.667 and describe([1.23456, 2.0])["min"] == 1.235


def test_merging_new_kinds_and_a_tick_without_answers():
    a, b = Recorder(), Recorder()
    stream(a, 0.0, [], end="http_error", status=500, detail="x " * 150)
    stream(b, 0.0, [], end="cancelled", status=None)
    stream(b, 0.0, [], end="timeout", detail="slow")
    a.merge(b)
    assert a.ends == {"http_error": 1, "cancelled": 1, "timeout": 1}
    assert a.statuses == {500: 1, "none": 1, 200: 1}
    assert a.error_examples == {"http_error: " + ("x " * 100)[:200]: 1, "timeout: slow": 1}  # details cut at 200
    assert a.timeline == [] and summarize(a)["status_counts"] == {"500": 1, "none": 1, "200": 1}
    c = Recorder()
    c.started = 2
    c.tick(1.0)
    t = c.timeline[0][0]
    assert t == round(t, 3) and 0 <= t < 60 and c.timeline[0][1:] == (0, 0, 0, 0, 2, 1.0)
    d, e = Recorder(), Recorder()
    d.timeline = [(1.25, 0, 0, 0, 0, 1, 5.0)]
    e.timeline = [(0.1234, 2, 1, 3, 4, 0, 6.0)]
    e.finished, e.ends = 2, {"done": 1}
    d.merge(e)
    assert d.timeline[-1] == (1.373, 2, 1, 3, 4, 0, 6.0)


def test_comparison_rounding_and_the_default_order():
    a = {"ttft_ms": {"p50": 12.34567, "p99": 1.0}, "gap_ms": None, "total_ms": None,
         "requests_per_s": 1.0, "chunks_per_s": 2.0}
    b = {"ttft_ms": {"p50": 10.0, "p99": 1.0}, "gap_ms": None, "total_ms": None,
         "requests_per_s": 3.0, "chunks_per_s": 3.0}
    c = report.comparison(*doc_for(a, b))
    assert c["ttft_p50_added_ms"] == 2.346 and c["ttft_p99_added_ms"] == 0.0
    assert c["requests_per_s_ratio"] == 0.3333 and c["chunks_per_s_ratio"] == 0.6667
    doc = known_doc()
    del doc["config"]["rounds"]
    again = report.document(doc["config"], doc["runs"])
    assert again["comparison"]["order"] == "sequential: target first, then compare, same parameters"
    assert report.document(doc["config"], doc["runs"][:1])["comparison"] is None


def test_rates_and_ticks_are_rounded_to_three_decimals(monkeypatch):
    from tornado_grok.loadtest import stats
    rec = Recorder()
    rec.t_start = rec.t_last_end = 0.0
    stream(rec, 0.0, [3.0])
    assert summarize(rec)["chunks_per_s"] == 0.333 and summarize(rec)["requests_per_s"] == 0.333
    monkeypatch.setattr(stats, "perf", lambda: 101.23456)  # a known clock for the tick's timestamp
    rec.t_start = 100.0
    rec.tick(0.0)
    assert rec.timeline[-1][0] == 1.235
