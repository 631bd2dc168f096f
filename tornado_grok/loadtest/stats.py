"""Samples, counters and the summary of one run.

Latency samples are kept exactly, as float milliseconds in array('d') (8 bytes each: a few million
samples are a few tens of MiB), and sorted once at the end for exact percentiles.
"""
import math
import time
from array import array

perf = time.perf_counter

PERCENTILES = (50, 90, 99)
MAX_EXAMPLES = 5


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending sequence (p in 0..100)."""
    n = len(sorted_values)
    if n == 0:
        return None
    k = max(0, min(n - 1, math.ceil(p / 100.0 * n) - 1))
    return sorted_values[k]


def describe(samples):
    """n, mean, min, p50, p90, p99, max of a sample array (ms), or None when empty."""
    if not samples:
        return None
    s = sorted(samples)
    out = {"n": len(s), "mean": round(math.fsum(s) / len(s), 3), "min": round(s[0], 3)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(s, p), 3)
    out["max"] = round(s[-1], 3)
    return out


class Recorder:
    """Everything measured during one run; the client calls it on each event."""

    def __init__(self):
        self.headers_ms = array("d")
        self.ttft_ms = array("d")
        self.gap_ms = array("d")
        self.total_ms = array("d")
        # Per request that produced tokens (ms): vLLM's TPOT (e2e - ttft) / (tokens - 1) and
        # guidellm's ITL (last token - first token) / (tokens - 1); output tokens/s = tokens / e2e.
        self.tpot_ms = array("d")
        self.itl_ms = array("d")
        self.req_tps = array("d")
        # One entry per finished request, for goodput, plots over time and records: end time (s
        # since start), ttft/tpot/itl/e2e in ms (nan when not measured), end kind and tokens.
        self.req_end_s = array("d")
        self.req_ttft = array("d")
        self.req_tpot = array("d")
        self.req_itl = array("d")
        self.req_e2e = array("d")
        self.req_ok = array("b")
        self.out_tokens = 0          # usage's completion tokens, or the chunks counted when absent
        self.counted_tokens = 0      # requests whose tokens were counted (no usage)
        self.rows = None             # a list when --records is on: one tuple per request
        self.start_lag_ms = array("d")  # open loop: actual start - scheduled arrival
        self.started = 0
        self.finished = 0
        self.dropped = 0  # open loop: arrivals skipped because max in-flight was reached
        self.chunks = 0
        self.tokens = 0
        self.token_reports = 0
        self.ends = {}
        self.statuses = {}
        self.error_examples = {}  # first distinct error messages -> how often each was seen
        self.t_start = perf()
        self.t_last_end = self.t_start
        self.timeline = []  # (t_s, finished, done, chunks, tokens, open, cpu_pct)
        self.merged_wall = None

    @property
    def open(self):
        return self.started - self.finished

    def start_clock(self):
        self.t_start = self.t_last_end = perf()

    def started_one(self):
        self.started += 1

    def content_event(self, res, now):
        """One SSE event (or JSON answer) with non-empty content or reasoning_content."""
        if res.chunks:
            self.gap_ms.append((now - res.t_prev) * 1000.0)
        else:
            res.t_first = now
        res.t_prev = now
        res.chunks += 1
        self.chunks += 1

    def finished_one(self, res):
        self.finished += 1
        self.t_last_end = max(self.t_last_end, res.t_end)
        end = res.end
        self.ends[end] = self.ends.get(end, 0) + 1
        st = res.status or "none"
        self.statuses[st] = self.statuses.get(st, 0) + 1
        if res.t_headers:
            self.headers_ms.append((res.t_headers - res.t0) * 1000.0)
        if res.t_first:
            self.ttft_ms.append((res.t_first - res.t0) * 1000.0)
        if end == "done":
            self.total_ms.append((res.t_end - res.t0) * 1000.0)
        if res.tokens is not None:
            self.tokens += res.tokens
            self.token_reports += 1
        self._per_request(res, end)
        if end not in ("done", "cancelled"):
            detail = res.error if end == "error_event" else res.detail
            msg = f"{end}: {' '.join(str(detail).split())[:200]}" if detail else end
            if msg in self.error_examples:
                self.error_examples[msg] += 1
            elif len(self.error_examples) < MAX_EXAMPLES:
                self.error_examples[msg] = 1

    def _per_request(self, res, end):
        ntok = res.tokens if res.tokens is not None else res.chunks
        if res.tokens is None and res.chunks:
            self.counted_tokens += 1
        self.out_tokens += ntok
        nan = math.nan
        ttft = (res.t_first - res.t0) * 1000.0 if res.t_first else nan
        e2e = tpot = itl = nan
        if end == "done":
            e2e = (res.t_end - res.t0) * 1000.0
            if ntok > 1 and res.t_first:
                tpot = (e2e - ttft) / (ntok - 1)
                itl = (res.t_prev - res.t_first) * 1000.0 / (ntok - 1)
                self.tpot_ms.append(tpot)
                self.itl_ms.append(itl)
            if ntok and e2e > 0:
                self.req_tps.append(ntok * 1000.0 / e2e)
        self.req_end_s.append(res.t_end - self.t_start)
        self.req_ttft.append(ttft)
        self.req_tpot.append(tpot)
        self.req_itl.append(itl)
        self.req_e2e.append(e2e)
        self.req_ok.append(1 if end == "done" else (0 if end == "cancelled" else -1))
        if self.rows is not None:
            err = res.error if end == "error_event" else res.detail
            self.rows.append((res.t0, res.status, end, ttft, res.chunks, res.tokens, ntok, res.t_end,
                              e2e, None if end == "done" else err, getattr(res, "conv", None),
                              getattr(res, "turn", None)))

    def good(self, limits):
        """Requests that ended done with each of their per-request figures within `limits`
        (metric -> ms); a figure not measured (tpot of a one-token answer) does not count against."""
        cols = [(getattr(self, "req_" + m), lim) for m, lim in limits.items()]
        n = 0
        for i, ok in enumerate(self.req_ok):
            if ok == 1 and all(not (col[i] > lim) for col, lim in cols):
                n += 1
        return n

    def wall_s(self):
        """Seconds from the first request to the last response (summed over merged rounds)."""
        if self.merged_wall is not None:
            return self.merged_wall
        return max(1e-9, self.t_last_end - self.t_start)

    def merge(self, later):
        """Append a later run against the same target (a round of an alternating --compare)."""
        wall = self.wall_s()
        t_off = self.timeline[-1][0] if self.timeline else 0.0
        base = (self.finished, self.ends.get("done", 0), self.chunks, self.tokens)
        for row in later.timeline:
            self.timeline.append((round(t_off + row[0], 3), base[0] + row[1], base[1] + row[2],
                                  base[2] + row[3], base[3] + row[4], row[5], row[6]))
        for name in ("headers_ms", "ttft_ms", "gap_ms", "total_ms", "start_lag_ms", "tpot_ms",
                     "itl_ms", "req_tps", "req_ttft", "req_tpot", "req_itl", "req_e2e", "req_ok"):
            getattr(self, name).extend(getattr(later, name))
        self.req_end_s.extend(t_off + t for t in later.req_end_s)
        if self.rows is not None and later.rows is not None:
            self.rows.extend(later.rows)
        for name in ("started", "finished", "dropped", "chunks", "tokens", "token_reports",
                     "out_tokens", "counted_tokens"):
            setattr(self, name, getattr(self, name) + getattr(later, name))
        for mine, theirs in ((self.ends, later.ends), (self.statuses, later.statuses)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        for msg, n in later.error_examples.items():
            if msg in self.error_examples or len(self.error_examples) < MAX_EXAMPLES:
                self.error_examples[msg] = self.error_examples.get(msg, 0) + n
        self.merged_wall = wall + later.wall_s()

    def tick(self, cpu_pct):
        self.timeline.append((round(perf() - self.t_start, 3), self.finished,
                              self.ends.get("done", 0), self.chunks, self.tokens, self.open,
                              cpu_pct))


def summarize(rec, limits=None):
    """The run's figures as a plain dict (the JSON report's `summary`); `limits` (metric -> ms,
    from the SLOs) add goodput."""
    wall = rec.wall_s()
    done = rec.ends.get("done", 0)
    errors = {k: v for k, v in rec.ends.items() if k not in ("done", "cancelled")}

    def rate(x):
        return round(x / wall, 3) if wall > 0 else None

    return {
        "started": rec.started,
        "finished": rec.finished,
        "ok": done,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "ends": dict(rec.ends),
        "status_counts": {str(k): v for k, v in rec.statuses.items()},
        "dropped_arrivals": rec.dropped,
        "error_examples": [{"error": k, "count": v} for k, v in rec.error_examples.items()],
        "wall_s": round(wall, 3),
        "requests_per_s": rate(done),
        "chunks": rec.chunks,
        "chunks_per_s": rate(rec.chunks),
        "tokens": rec.tokens if rec.token_reports else None,
        "tokens_per_s": rate(rec.tokens) if rec.token_reports else None,
        "output_tokens": rec.out_tokens,
        "output_tokens_source": ("usage" if not rec.counted_tokens else
                                 "counted" if not rec.token_reports else "usage, else counted"),
        "output_tokens_per_s": rate(rec.out_tokens),
        "goodput": None if limits is None else _goodput(rec, limits, rate),
        "ttft_ms": describe(rec.ttft_ms),
        "tpot_ms": describe(rec.tpot_ms),
        "itl_ms": describe(rec.itl_ms),
        "request_output_tokens_per_s": describe(rec.req_tps),
        "gap_ms": describe(rec.gap_ms),
        "total_ms": describe(rec.total_ms),
        "headers_ms": describe(rec.headers_ms),
        "start_lag_ms": describe(rec.start_lag_ms),
    }


def _goodput(rec, limits, rate):
    good = rec.good(limits)
    return {"requests": good, "per_s": rate(good),
            "share": round(good / rec.finished, 4) if rec.finished else None,
            "limits_ms": dict(limits)}
