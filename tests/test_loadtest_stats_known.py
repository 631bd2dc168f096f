"""The load tester's per-request figures (stats.py) on known data, with requests that do not start at
time 0: each request's end time, TTFT, TPOT, ITL and e2e as recorded for goodput, the plots over
time and --records; how each end counts (done 1, cancelled 0, failed -1); goodput at its limit and
on every per-request metric; per-request tokens/s on sub-millisecond answers; and merged rounds
(their end times continue the earlier round's clock, their records are kept)."""
import math

from tornado_grok.loadtest import html
from tornado_grok.loadtest.client import Result
from tornado_grok.loadtest.stats import Recorder, summarize


def req(rec, t0, chunks_at, end_at, tokens=None, end="done", status=200, detail=None, error=None):
    res = Result()
    res.t0 = t0
    rec.started_one()
    for t in chunks_at:
        rec.content_event(res, t)
    res.t_end, res.end, res.status, res.tokens = end_at, end, status, tokens
    res.detail, res.error = detail, error
    rec.finished_one(res)
    return res


def rounded(values, nd=6):
    return [v if math.isnan(v) else round(v, nd) for v in values]


def same(a, b):
    """Lists equal, NaN equal to NaN."""
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


def known():
    """A run that started at t = 10 s: an answer, a one-token answer, a failure and a cancel."""
    rec = Recorder()
    rec.t_start = rec.t_last_end = 10.0
    rec.rows = []
    # Start 10.5 s; chunks at 10.7, 10.8, 11.0; end 11.5; 4 tokens (usage):
    # TTFT 200, e2e 1000, TPOT (1000 - 200) / 3 = 266.667, ITL (11.0 - 10.7) s / 3 = 100, 4 tokens/s.
    req(rec, 10.5, [10.7, 10.8, 11.0], 11.5, tokens=4)
    # Start 11.0; one chunk at 11.1, end 11.25; no usage: 1 token counted; TTFT 100, e2e 250, no TPOT.
    req(rec, 11.0, [11.1], 11.25)
    # An in-band error after one chunk at 12.2 (start 12.0), end 12.5: TTFT 200, no e2e.
    req(rec, 12.0, [12.2], 12.5, end="error_event", error="boom", detail="ignored")
    # Cancelled before anything came: end 13.0.
    req(rec, 12.5, [], 13.0, end="cancelled", status=None)
    return rec


def test_each_request_figures_from_its_own_start():
    rec = known()
    nan = math.nan
    assert rounded(rec.req_end_s) == [1.5, 1.25, 2.5, 3.0]  # seconds since the run started
    assert same(rounded(rec.req_ttft, 3), [200.0, 100.0, 200.0, nan])
    assert same(rounded(rec.req_e2e, 3), [1000.0, 250.0, nan, nan])
    assert same(rounded(rec.req_tpot, 3), [266.667, nan, nan, nan])
    assert same(rounded(rec.req_itl, 3), [100.0, nan, nan, nan])
    assert list(rec.req_ok) == [1, 1, -1, 0]  # done, done, failed, cancelled (not a failure)
    assert rounded(rec.req_tps, 3) == [4.0, 4.0]  # 4 tokens / 1 s, 1 token / 0.25 s
    assert rounded(rec.total_ms, 3) == [1000.0, 250.0]


def test_records_rows_hold_each_request():
    rec = known()
    rows = [tuple(round(v, 6) if isinstance(v, float) and not math.isnan(v) else v for v in r) for r in rec.rows]
    assert rows[0] == (10.5, 200, "done", 200.0, 3, 4, 4, 11.5, 1000.0, None, None, None)
    assert rows[1] == (11.0, 200, "done", 100.0, 1, None, 1, 11.25, 250.0, None, None, None)
    assert rows[2][:8] == (12.0, 200, "error_event", 200.0, 1, None, 1, 12.5) and math.isnan(rows[2][8])
    assert rows[2][9:] == ("boom", None, None)  # an error event's message, not the detail
    assert rows[3][2] == "cancelled" and rows[3][9] is None and math.isnan(rows[3][3])


def test_goodput_is_judged_on_every_per_request_metric_and_at_the_limit():
    rec = known()
    # The answers' TTFT are 200 and 100 ms, e2e 1000 and 250 ms, TPOT 266.667 (one), ITL 100 (one).
    assert rec.good({}) == 2  # done ones only: never the failure nor the cancelled one
    assert rec.good({"ttft": 200.001}) == 2 and rec.good({"ttft": 199.999}) == 1
    # e2e is exactly 1000.0 ms (11.5 - 10.5 s): at the limit is within it.
    assert rec.good({"e2e": 999.0}) == 1 and rec.good({"e2e": 1000.0}) == 2 and rec.good({"e2e": 249.0}) == 0
    assert rec.good({"itl": 99.0}) == 1 and rec.good({"itl": 100.001}) == 2  # no ITL (one token): not against
    assert rec.good({"tpot": 266.0}) == 1 and rec.good({"tpot": 267.0, "e2e": 300.0}) == 1
    s = summarize(rec, {"e2e": 500.0})
    # 1 good of 4 finished over the 3.0 s from the run's start to its last end.
    assert s["goodput"] == {"requests": 1, "per_s": 0.333, "share": 0.25, "limits_ms": {"e2e": 500.0}}
    assert summarize(rec, {"e2e": 2000.0})["goodput"]["share"] == 0.5
    three = Recorder()
    for _ in range(3):
        req(three, 0.0, [0.1], 0.2, tokens=1)
    assert summarize(three, {"ttft": 100.0})["goodput"]["share"] == 1.0
    assert summarize(three, {"ttft": 99.0})["goodput"]["share"] == 0.0
    req(three, 0.0, [], 0.2, end="timeout")
    req(three, 0.0, [], 0.2, end="timeout")
    assert summarize(three, {"ttft": 100.0})["goodput"]["share"] == 0.6
    req(three, 0.0, [], 0.2, end="timeout")
    assert summarize(three, {"ttft": 100.0})["goodput"]["share"] == 0.5
    req(three, 0.0, [], 0.2, end="timeout")
    req(three, 0.0, [], 0.2, end="timeout")
    req(three, 0.0, [], 0.2, end="timeout")
    assert summarize(three, {"ttft": 100.0})["goodput"]["share"] == 0.3333  # 3 of 9, four decimals


def test_tokens_per_second_of_fast_empty_and_instant_answers():
    rec = Recorder()
    rec.t_start = rec.t_last_end = 5.0
    req(rec, 5.0, [5.0002], 5.0005, tokens=1)   # a whole answer in 0.5 ms: 2000 tokens/s
    req(rec, 5.0, [], 5.001)                     # done but no content and no usage: 0 tokens, no rate
    req(rec, 6.0, [6.0], 6.0, tokens=3)          # e2e of 0 ms (clock resolution): no rate, no error
    assert rounded(rec.req_tps, 3) == [2000.0]
    assert summarize(rec)["request_output_tokens_per_s"]["n"] == 1
    assert summarize(rec)["output_tokens_source"] == "usage"  # the empty answer counted nothing


def two_rounds():
    a, b = Recorder(), Recorder()
    a.t_start = a.t_last_end = 100.0
    b.t_start = b.t_last_end = 200.0
    a.rows, b.rows = [], []
    req(a, 100.0, [100.5, 100.75], 101.0, tokens=2)
    req(b, 200.0, [200.25], 200.5)
    req(b, 200.0, [], 200.75, end="http_error", status=500, detail="HTTP 500")
    a.timeline = [(0.25, 0, 0, 1, 0, 1, 5.0), (1.25, 1, 1, 2, 2, 0, 5.0)]
    b.timeline = [(0.75, 2, 1, 1, 0, 0, 5.0)]
    return a, b


def test_merged_rounds_continue_the_clock_and_keep_the_records():
    a, b = two_rounds()
    a.merge(b)
    # The later round's end times follow the earlier round's last timeline row (1.25 s).
    assert rounded(a.req_end_s) == [1.0, 1.75, 2.0]
    assert list(a.req_ok) == [1, 1, -1] and same(rounded(a.req_e2e, 3), [1000.0, 500.0, math.nan])
    assert [r[2] for r in a.rows] == ["done", "done", "http_error"] and a.rows[2][9] == "HTTP 500"
    assert (a.out_tokens, a.counted_tokens) == (3, 1)
    assert summarize(a)["output_tokens_source"] == "usage, else counted"
    # A round with records merged into one without (or the reverse) keeps what there is.
    c, d = two_rounds()
    c.rows = None
    c.merge(d)
    assert c.rows is None and len(c.req_ok) == 3
    e, f = two_rounds()
    f.rows = None
    e.merge(f)
    assert len(e.rows) == 1


def test_failed_requests_per_second_plot_counts_failures_not_cancels():
    # The plot's series: ends at 1.5, 1.25, 2.5 (the failure) and 3.0 s (the cancel), in 0.25 s
    # intervals: 1 failure / 0.25 s = 4/s in the interval ending at 2.75 s, nothing elsewhere.
    name, xs, ys = html._errors_over_time("target", known())
    assert xs == [0.25 * (b + 1) for b in range(13)]
    assert ys == [0.0] * 10 + [4.0, 0.0, 0.0]
