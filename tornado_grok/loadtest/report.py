"""The run as one JSON document, and as a table for people."""
import datetime

from .stats import summarize

SCHEMA = "tornado_grok.loadtest/1"  # later versions only added keys
TIMELINE_FIELDS = ("t_s", "finished", "done", "chunks", "tokens", "open", "cpu_pct")


def run_entry(label, target, rec, selfreport, connections, limits=None):
    """One target's part of the document (`limits`: the SLOs' per-request limits, for goodput)."""
    return {
        "label": label,
        "url": target.url,
        "endpoint": f"{_hostport(target.host)}:{target.port}{target.path}",
        "summary": summarize(rec, limits),
        "self": selfreport,
        "connections_opened": connections,
        "timeline": {"fields": list(TIMELINE_FIELDS), "rows": [list(r) for r in rec.timeline]},
    }


def _hostport(host):
    """An IPv6 literal in brackets, as in a URL (`[::1]:8000`, not `::1:8000`)."""
    return f"[{host}]" if ":" in host else host


def _p(summary, metric, p):
    d = summary.get(metric)
    return d.get(p) if d else None


def _diff(a, b):
    return None if a is None or b is None else round(a - b, 3)


def _ratio(a, b):
    return None if not a or not b else round(a / b, 4)


def comparison(primary, baseline, rounds=1):
    """What `primary` adds over `baseline` (positive ms = primary slower)."""
    a, b = primary["summary"], baseline["summary"]
    order = ("sequential: target first, then compare, same parameters" if rounds == 1 else
             f"alternating: {rounds} rounds of target then compare, each with 1/{rounds} of the caps")
    return {
        "primary": primary["url"],
        "baseline": baseline["url"],
        "order": order,
        "ttft_p50_added_ms": _diff(_p(a, "ttft_ms", "p50"), _p(b, "ttft_ms", "p50")),
        "ttft_p99_added_ms": _diff(_p(a, "ttft_ms", "p99"), _p(b, "ttft_ms", "p99")),
        "gap_p50_added_ms": _diff(_p(a, "gap_ms", "p50"), _p(b, "gap_ms", "p50")),
        "total_p50_added_ms": _diff(_p(a, "total_ms", "p50"), _p(b, "total_ms", "p50")),
        "requests_per_s_ratio": _ratio(a["requests_per_s"], b["requests_per_s"]),
        "chunks_per_s_ratio": _ratio(a["chunks_per_s"], b["chunks_per_s"]),
    }


def document(config, runs):
    """The whole report: config, one entry per target, the comparison when there were two."""
    warnings = []
    for r in runs:
        name = r["label"] if r.get("rate") is None else f"{r['label']} @ {r['rate']:g}/s"
        warnings += [f"{name}: {w}" for w in r["self"]["warnings"]]
    sweep = sweep_summary(runs) if config.get("rate_sweep") else None
    if sweep:
        failed = [f"{label}: no rate of the sweep met the SLOs and --max-error-rate"
                  for label, sw in sweep.items() if sw["knee"] is None]
        cmp_ = None
    else:
        failed = [f"{r['label']}: {why}" for r in runs for why in r.get("failed", ())]
        cmp_ = comparison(runs[0], runs[1], config.get("rounds", 1)) if len(runs) > 1 else None
    return {
        "schema": SCHEMA,
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "runs": runs,
        "comparison": cmp_,
        "sweep": sweep,
        "warnings": warnings,
        "failed": failed,
    }


def sweep_summary(runs):
    """Per target: one row per rate, and the knee: the highest rate that met the SLOs and the
    error limit (a lower rate that failed is still shown: on a noisy machine, look at the rows)."""
    out = {}
    for r in runs:
        s = r["summary"]
        sw = out.setdefault(r["label"], {"rows": [], "knee": None})
        sw["rows"].append({
            "rate": r["rate"], "requests_per_s": s["requests_per_s"],
            "goodput_per_s": (s.get("goodput") or {}).get("per_s"),
            "ttft_p50_ms": _p(s, "ttft_ms", "p50"), "ttft_p99_ms": _p(s, "ttft_ms", "p99"),
            "tpot_p50_ms": _p(s, "tpot_ms", "p50"), "errors": s["errors"], "finished": s["finished"],
            "passed": not r.get("failed"), "why": list(r.get("failed", ())),
        })
    for sw in out.values():
        sw["rows"].sort(key=lambda row: row["rate"])
        passed = [row["rate"] for row in sw["rows"] if row["passed"]]
        sw["knee"] = max(passed) if passed else None
    return out


def _fmt(v, nd=2):
    if v is None:
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _signed(v):
    return "n/a" if v is None else f"{v:+.2f} ms"


def table(doc):
    """A readable plain-text report."""
    c = doc["config"]
    out = [f"tornado_grok loadtest: {c['shape']}; prompt {c['prompt']!r}; "
           f"{'stream' if c['stream'] else 'no stream'}; model {c['model']}"]
    caps = []
    if c["requests"] is not None:
        caps.append(f"{c['requests']} requests")
    if c["duration_s"] is not None:
        caps.append(f"{c['duration_s']:g} s")
    out.append(f"caps: {' or '.join(caps)}; per-request timeout {c['timeout_s']:g} s")
    for r in doc["runs"]:
        s, me = r["summary"], r["self"]
        out.append("")
        rate = "" if r.get("rate") is None else f" at {r['rate']:g} req/s"
        scheme = r["url"].split(":", 1)[0].lower()  # http or https (the target checked it)
        out.append(f"[{r['label']}{rate}] POST {scheme}://{r['endpoint']}")
        out.append(f"  requests   {s['finished']} finished, {s['ok']} ok, {s['errors']} errors "
                   f"in {s['wall_s']:.2f} s; {r['connections_opened']} connections opened")
        if s["start_lag_ms"]:
            lag = s["start_lag_ms"]
            out.append(f"  schedule   requests started {lag['p50']:.2f} ms (p50), {lag['p99']:.2f} ms "
                       f"(p99), {lag['max']:.2f} ms (max) after their Poisson arrival time")
        if s["dropped_arrivals"]:
            out.append(f"  dropped    {s['dropped_arrivals']} arrivals (max in-flight reached)")
        tok = "-" if s["tokens_per_s"] is None else f"{s['tokens_per_s']:.1f}"
        out.append(f"  throughput {_fmt(s['requests_per_s'], 1)} req/s   "
                   f"{_fmt(s['chunks_per_s'], 1)} chunks/s   {tok} tokens/s   "
                   f"({s['chunks']} chunks, {'-' if s['tokens'] is None else s['tokens']} tokens)")
        out.append(f"  {'latency ms':<12}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}{'n':>9}")
        for name, key in (("headers", "headers_ms"), ("TTFT", "ttft_ms"), ("chunk gap", "gap_ms"),
                          ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("e2e", "total_ms")):
            d = s[key] or {}
            out.append(f"  {name:<12}" + "".join(f"{_fmt(d.get(p), 2):>10}" for p in
                                                 ("p50", "p90", "p99", "max")) + f"{d.get('n', 0):>9}")
        out.append("  (chunk gap: between content events, vLLM's ITL; TPOT: vLLM's (e2e - TTFT) /")
        out.append("  (tokens - 1); ITL: guidellm's (last - first token) / (tokens - 1); e2e: whole answer)")
        out.append(f"  output     {s['output_tokens']} tokens ({s['output_tokens_source']}), "
                   f"{_fmt(s['output_tokens_per_s'], 1)} tokens/s")
        gp = s.get("goodput")
        if gp:
            lim = ", ".join(f"{k} <= {v:g} ms" for k, v in gp["limits_ms"].items()) or "none per request"
            out.append(f"  goodput    {gp['requests']} requests within {lim}: {_fmt(gp['per_s'], 2)} req/s "
                       f"({100.0 * (gp['share'] or 0):.1f}%)")
        for res in r.get("slo") or ():
            got = "no samples" if res["value_ms"] is None else f"{res['value_ms']:g} ms"
            out.append(f"  SLO        {res['slo']}: {got} {'met' if res['met'] else 'MISSED'}")
        ends = ", ".join(f"{k} {v}" for k, v in sorted(s["ends"].items(), key=lambda kv: -kv[1]))
        out.append(f"  ends       {ends or '-'}")
        odd = {k: v for k, v in s["status_counts"].items() if k != "200"}
        if odd:
            out.append("  statuses   " + ", ".join(f"{k}: {v}" for k, v in sorted(odd.items())))
        for e in s["error_examples"]:
            out.append(f"    e.g. {e['error']}  (x{e['count']})")
        out.append(f"  load tester: cpu {me['cpu_pct_of_one_core']:.0f}% of one core "
                   f"(peak {_fmt(me['peak_interval_cpu_pct'], 0)}%), loop lag p99 "
                   f"{me['loop_lag_ms_p99']:.1f} ms, waited for a CPU "
                   f"{'-' if me['cpu_wait_s'] is None else format(me['cpu_wait_s'], '.2f')} s, "
                   f"rss {me['rss_mib_max']:.0f} MiB")
        for w in me["warnings"]:
            out.append(f"  WARNING: {w}")
    cmp_ = doc["comparison"]
    if cmp_:
        out.append("")
        out.append(f"comparison ({cmp_['order']}): [target] {cmp_['primary']} vs "
                   f"[compare] {cmp_['baseline']}")
        out.append(f"  added TTFT p50 {_signed(cmp_['ttft_p50_added_ms'])}, "
                   f"p99 {_signed(cmp_['ttft_p99_added_ms'])}; chunk gap p50 "
                   f"{_signed(cmp_['gap_p50_added_ms'])}; total p50 {_signed(cmp_['total_p50_added_ms'])}")
        rr, cr = cmp_["requests_per_s_ratio"], cmp_["chunks_per_s_ratio"]
        out.append(f"  throughput ratio target/compare: {'n/a' if rr is None else f'{rr:.3f}x'} req/s, "
                   f"{'n/a' if cr is None else f'{cr:.3f}x'} chunks/s")
    for label, sw in (doc.get("sweep") or {}).items():
        out.append("")
        knee = "none" if sw["knee"] is None else f"{sw['knee']:g} req/s"
        out.append(f"rate sweep [{label}]: knee {knee} (the highest rate that met the SLOs and "
                   "--max-error-rate)")
        out.append(f"  {'rate':>8}{'done/s':>9}{'good/s':>9}{'TTFT p50':>10}{'TTFT p99':>10}"
                   f"{'TPOT p50':>10}{'errors':>8}  verdict")
        for row in sw["rows"]:
            out.append(f"  {row['rate']:>8g}{_fmt(row['requests_per_s'], 1):>9}{_fmt(row['goodput_per_s'], 1):>9}"
                       f"{_fmt(row['ttft_p50_ms']):>10}{_fmt(row['ttft_p99_ms']):>10}"
                       f"{_fmt(row['tpot_p50_ms']):>10}{row['errors']:>8}  "
                       + ("ok" if row["passed"] else "FAIL: " + "; ".join(row["why"])))
    return "\n".join(out) + "\n"
