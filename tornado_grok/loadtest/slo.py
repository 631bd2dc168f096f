"""Service-level objectives from the command line, and the checks that set the exit status.

`--slo ttft_p99=500ms,tpot_p50=50ms`: each term is METRIC_STAT=LIMIT. METRIC is one of ttft, tpot,
itl, e2e, chunk_gap; STAT is pNN (nearest rank), mean or max; LIMIT is a time (ms, s or us; a bare
number is ms). The run meets a term when that statistic is at or below the limit. Goodput counts
the requests that ended `done` and whose own ttft, tpot, itl and e2e are each within every limit
given for that metric (chunk_gap has no per-request value and only judges the run).
"""
import math
import re

from .stats import percentile

METRICS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": "itl_ms", "e2e": "total_ms",
           "chunk_gap": "gap_ms"}
PER_REQUEST = ("ttft", "tpot", "itl", "e2e")
_TERM = re.compile(r"^(ttft|tpot|itl|e2e|chunk_gap)_(p\d{1,2}(?:\.\d+)?|mean|max)=(\d+(?:\.\d+)?)(ms|s|us)?$")
_UNIT = {"ms": 1.0, "s": 1000.0, "us": 0.001, None: 1.0}


def parse_slos(spec):
    """'ttft_p99=500ms,tpot_p50=50ms' -> [(metric, stat, limit_ms, term)]."""
    out = []
    for term in (t.strip() for t in spec.split(",")):
        if not term:
            continue
        m = _TERM.match(term)
        if not m:
            raise ValueError(f"bad --slo term {term!r}: METRIC_STAT=LIMIT with METRIC one of "
                             f"{', '.join(METRICS)}, STAT pNN, mean or max, LIMIT like 500ms or 2s")
        out.append((m.group(1), m.group(2), float(m.group(3)) * _UNIT[m.group(4)], term))
    if not out:
        raise ValueError("empty --slo")
    return out


def stat_of(samples, stat):
    vals = sorted(v for v in samples if not math.isnan(v))
    if not vals:
        return None
    if stat == "mean":
        return math.fsum(vals) / len(vals)
    if stat == "max":
        return vals[-1]
    return percentile(vals, float(stat[1:]))


def evaluate(rec, slos):
    """Each SLO against a Recorder: [{slo, value_ms, limit_ms, met}]."""
    out = []
    for metric, stat, limit, term in slos:
        v = stat_of(getattr(rec, METRICS[metric]), stat)
        out.append({"slo": term, "value_ms": None if v is None else round(v, 3),
                    "limit_ms": limit, "met": v is not None and v <= limit})
    return out


def limits(slos):
    """The per-request limits: metric -> the tightest limit given for it."""
    lim = {}
    for metric, _, limit, _ in slos:
        if metric in PER_REQUEST:
            lim[metric] = min(limit, lim.get(metric, math.inf))
    return lim


def verdict(summary, max_error_rate, slo_results):
    """Why the run fails its checks (a list of reasons; empty when it passes)."""
    why = []
    judged = summary["finished"] - summary["ends"].get("cancelled", 0)
    if judged == 0 and summary["finished"] == 0:
        why.append("no request finished")
    elif judged and summary["errors"] / judged > max_error_rate:
        why.append(f"{summary['errors']} of {judged} requests failed "
                   f"({100.0 * summary['errors'] / judged:.1f}% > --max-error-rate "
                   f"{100.0 * max_error_rate:g}%)")
    for r in slo_results or ():
        if not r["met"]:
            got = "no samples" if r["value_ms"] is None else f"{r['value_ms']:g} ms"
            why.append(f"SLO {r['slo']} missed: {got}")
    return why
