"""A self-contained HTML report: the text table plus inline SVG plots, no scripts, no assets."""
import html
import math

from .report import table
from .stats import percentile

W, H = 760, 280
ML, MR, MT, MB = 64, 16, 30, 44
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
BINS = 40


def _nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    t = math.ceil(lo / step) * step
    out = []
    while t <= hi + 1e-9 * step:
        out.append(t)
        t += step
    return out


def _num(v):
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:.3g}k" if abs(v) < 1e6 else f"{v / 1e6:.3g}M"
    return f"{v:.3g}"


def _frame(title, xlabel, ylabel):
    e = html.escape
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" '
            f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11" role="img">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{e(title)}</text>',
            f'<text x="{(ML + W - MR) / 2}" y="{H - 6}" text-anchor="middle">{e(xlabel)}</text>',
            f'<text x="14" y="{(MT + H - MB) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 14 {(MT + H - MB) / 2})">{e(ylabel)}</text>',
            f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" stroke="#333"/>',
            f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" stroke="#333"/>']


def _legend(parts, names):
    if names:  # a white box under the legend: lines and markers must not run through it
        parts.append(f'<rect x="{W - MR - 206}" y="{MT - 6}" width="204" height="{16 * len(names) + 6}" '
                     'fill="white" fill-opacity="0.85"/>')
    for i, name in enumerate(names):
        x = W - MR - 200
        y = MT + 6 + 16 * i
        parts.append(f'<rect x="{x}" y="{y - 9}" width="12" height="10" fill="{COLORS[i % 4]}" '
                     f'fill-opacity="0.6"/><text x="{x + 18}" y="{y}">{html.escape(name)}</text>')


def _yaxis(parts, ymax, sy):
    for t in _nice_ticks(0, ymax):
        y = sy(t)
        parts.append(f'<line x1="{ML - 4}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(t)}</text>')


def histogram_svg(title, unit, series):
    """Log-binned histogram of each (name, samples) series, as a share of that series' samples."""
    series = [(n, s) for n, s in series if len(s)]
    parts = _frame(title, f"{unit} (log scale)", "share of samples")
    if not series:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no samples</text></svg>')
        return "".join(parts)
    positives = [min((v for v in s if v > 0), default=1e-3) for _, s in series]
    lo = max(1e-3, min(positives))
    hi = max(max(s) for _, s in series)
    hi = max(hi, lo * 1.01)
    llo, lhi = math.log10(lo), math.log10(hi)
    width = (lhi - llo) / BINS
    hists = []
    for _, s in series:
        counts = [0] * BINS
        for v in s:
            k = int((math.log10(v) - llo) / width) if v > lo else 0
            counts[min(BINS - 1, max(0, k))] += 1
        hists.append([c / len(s) for c in counts])
    ymax = max(max(h) for h in hists) * 1.1
    pw, ph = W - ML - MR, H - MT - MB

    def sy(v):
        return H - MB - ph * v / ymax
    _yaxis(parts, ymax, sy)
    bw = pw / BINS
    for i, h in enumerate(hists):
        for k, share in enumerate(h):
            if share:
                y = sy(share)
                parts.append(f'<rect x="{ML + k * bw:.1f}" y="{y:.1f}" width="{bw:.1f}" '
                             f'height="{H - MB - y:.1f}" fill="{COLORS[i % 4]}" fill-opacity="0.55"/>')
    def sx(v):
        return ML + pw * (math.log10(max(v, lo)) - llo) / (lhi - llo)
    for i, (_, samples) in enumerate(series):  # p50 and p99 markers
        ordered = sorted(samples)
        for p in (50, 99):
            v = percentile(ordered, p)
            x = sx(v)
            y = MT + 12 + 12 * (2 * i + (p == 99))
            parts.append(f'<line x1="{x:.1f}" y1="{MT}" x2="{x:.1f}" y2="{H - MB}" '
                         f'stroke="{COLORS[i % 4]}" stroke-dasharray="4 3"/>'
                         + (f'<text x="{x - 3:.1f}" y="{y}" text-anchor="end" ' if x > W - MR - 70 else
                            f'<text x="{x + 3:.1f}" y="{y}" ')  # near the right edge: label on the left
                         + f'fill="{COLORS[i % 4]}">p{p} {_num(v)}</text>')
    decades = range(math.floor(llo), math.ceil(lhi) + 1)
    for d in decades:
        for m in (1, 2, 5):
            v = m * 10 ** d
            if lo <= v <= hi:
                x = sx(v)
                parts.append(f'<line x1="{x:.1f}" y1="{H - MB}" x2="{x:.1f}" y2="{H - MB + 4}" '
                             f'stroke="#333"/><text x="{x:.1f}" y="{H - MB + 16}" '
                             f'text-anchor="middle">{_num(v)}</text>')
    _legend(parts, [n for n, _ in series])
    parts.append("</svg>")
    return "".join(parts)


def lines_svg(title, ylabel, series, xlabel="seconds since start", marks=()):
    """Line chart of each (name, xs, ys[, dashed]) series; `marks` are (x, text) vertical lines.
    Series sharing a name share a colour (p50 solid, p99 dashed)."""
    series = [tuple(s) + (False,) * (4 - len(s)) for s in series if s[1]]
    parts = _frame(title, xlabel, ylabel)
    if not series:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    xmax = max(max(xs) for _, xs, _, _ in series) or 1.0
    ymax = (max(max(ys) for _, _, ys, _ in series) or 1.0) * 1.1
    pw, ph = W - ML - MR, H - MT - MB

    def sx(v):
        return ML + pw * v / xmax

    def sy(v):
        return H - MB - ph * v / ymax
    _yaxis(parts, ymax, sy)
    for t in _nice_ticks(0, xmax):
        parts.append(f'<text x="{sx(t):.1f}" y="{H - MB + 16}" text-anchor="middle">{_num(t)}</text>')
    names = []
    for name, _, _, _ in series:
        if name not in names:
            names.append(name)
    for name, xs, ys, dashed in series:
        color = COLORS[names.index(name) % 4]
        step = max(1, len(xs) // 1500)  # long runs: thin the polyline
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs[::step], ys[::step]))
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>')
        if len(xs) <= 30:  # few points (a sweep): show them
            parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>'
                         for x, y in zip(xs, ys))
    for x, text in marks:
        parts.append(f'<line x1="{sx(x):.1f}" y1="{MT}" x2="{sx(x):.1f}" y2="{H - MB}" stroke="#555" '
                     f'stroke-dasharray="2 2"/><text x="{sx(x) - 3:.1f}" y="{H - MB - 6}" text-anchor="end">'
                     f'{html.escape(text)}</text>')  # at the bottom: the legend is at the top right
    _legend(parts, names)
    if any(d for *_, d in series):
        x = W - MR - 200
        y = MT + 6 + 16 * len(names)
        parts.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 12}" y2="{y - 4}" stroke="#333"/>'
                     f'<text x="{x + 18}" y="{y}">p50 solid</text>'
                     f'<line x1="{x + 80}" y1="{y - 4}" x2="{x + 92}" y2="{y - 4}" stroke="#333" '
                     f'stroke-dasharray="5 3"/><text x="{x + 98}" y="{y}">p99 dashed</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rates(rows, col):
    """Per-interval rate of a cumulative timeline column."""
    xs, ys = [], []
    for prev, cur in zip(rows, rows[1:]):
        dt = cur[0] - prev[0]
        if dt > 0:
            xs.append(cur[0])
            ys.append((cur[col] - prev[col]) / dt)
    return xs, ys


def _buckets(rec):
    """Requests grouped by the interval they ended in: (width s, {bucket: [indexes]})."""
    ends = rec.req_end_s
    span = max(ends) if len(ends) else 0.0
    width = max(0.25, span / 60.0)
    groups = {}
    for i, t in enumerate(ends):
        groups.setdefault(int(t / width), []).append(i)
    return width, groups


def _pct_over_time(name, rec, col):
    """(name, xs, p50s), (name, xs, p99s, dashed) of a per-request column, per interval."""
    width, groups = _buckets(rec)
    xs, p50, p99 = [], [], []
    values = getattr(rec, col)
    for b in sorted(groups):
        vals = sorted(values[i] for i in groups[b] if values[i] == values[i])  # not nan
        if vals:
            xs.append((b + 1) * width)
            p50.append(percentile(vals, 50))
            p99.append(percentile(vals, 99))
    return [(name, xs, p50), (name, xs, p99, True)]


def _errors_over_time(name, rec):
    width, groups = _buckets(rec)
    if not groups:
        return (name, [], [])
    xs = [(b + 1) * width for b in range(max(groups) + 1)]
    ys = [sum(1 for i in groups.get(b, ()) if rec.req_ok[i] == -1) / width for b in range(len(xs))]
    return (name, xs, ys)


def _card(label, value, note="", bad=False):
    cls = "card bad" if bad else "card"
    return (f'<div class="{cls}"><div class="v">{html.escape(value)}</div>'
            f'<div class="l">{html.escape(label)}</div><div class="n">{html.escape(note)}</div></div>')


def _ms(d, p):
    v = (d or {}).get(p)
    return "–" if v is None else (f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms")


def _cards(run, color):
    s = run["summary"]
    judged = s["finished"] - s["ends"].get("cancelled", 0)
    err_pct = 100.0 * s["errors"] / judged if judged else 0.0
    gp = s.get("goodput")
    cards = [
        _card("requests", f"{s['finished']}", f"{s['ok']} ok, {_num(s['requests_per_s'] or 0)}/s"),
        _card("errors", f"{s['errors']}", f"{err_pct:.1f}% of finished", bad=bool(s["errors"])),
        _card("TTFT p50 / p99", f"{_ms(s['ttft_ms'], 'p50')} / {_ms(s['ttft_ms'], 'p99')}"),
        _card("TPOT p50", _ms(s.get("tpot_ms"), "p50"), "(e2e − TTFT) / (tokens − 1)"),
        _card("output tokens/s", _num(s.get("output_tokens_per_s") or 0), s.get("output_tokens_source", "")),
        _card("goodput", "–" if not gp else f"{_num(gp['per_s'] or 0)}/s",
              "no --slo given" if not gp else f"{100.0 * (gp['share'] or 0):.0f}% within the SLOs",
              bad=bool(gp) and (gp["share"] or 0) < 1.0),
    ]
    where = run["label"] + ("" if run.get("rate") is None else f" @ {run['rate']:g}/s")
    return (f'<section class="target" style="border-left-color:{color}"><h3>'
            f'<span class="sw" style="background:{color}"></span>{html.escape(where)} '
            f'<code>{html.escape(run["url"])}</code></h3><div class="cards">{"".join(cards)}</div></section>')


_ROWS = (("headers", "headers_ms"), ("TTFT", "ttft_ms"), ("chunk gap", "gap_ms"), ("TPOT", "tpot_ms"),
         ("ITL (guidellm)", "itl_ms"), ("e2e", "total_ms"))


def _latency_table(runs, names):
    """Rows grouped by figure, one row per target: seven columns whatever the number of targets."""
    rows = []
    for label, key in _ROWS:
        for i, (r, name) in enumerate(zip(runs, names)):
            d = r["summary"].get(key) or {}
            cells = "".join(f"<td>{'–' if d.get(p) is None else format(d[p], '.2f')}</td>"
                            for p in ("p50", "p90", "p99", "max"))
            first = f'<th rowspan="{len(runs)}">{label}</th>' if i == 0 else ""
            rows.append(f'<tr class="{"grp" if i == 0 else ""}">{first}<td class="who" style="color:'
                        f'{COLORS[i % 4]}">{html.escape(name)}</td>{cells}<td>{d.get("n", 0)}</td></tr>')
    return ('<table><thead><tr><th>ms</th><th class="who">target</th><th>p50</th><th>p90</th>'
            f'<th>p99</th><th>max</th><th>n</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _sweep_svgs(doc):
    sweep = doc.get("sweep")
    if not sweep:
        return []
    rate_series, ttft_series, marks = [], [], []
    for label, sw in sweep.items():
        rows = sw["rows"]
        xs = [row["rate"] for row in rows]
        rate_series.append((f"{label} completed/s", xs, [row["requests_per_s"] or 0 for row in rows]))
        if any(row["goodput_per_s"] is not None for row in rows):
            rate_series.append((f"{label} good/s", xs, [row["goodput_per_s"] or 0 for row in rows]))
        ttft_series.append((label, xs, [row["ttft_p50_ms"] or 0 for row in rows]))
        ttft_series.append((label, xs, [row["ttft_p99_ms"] or 0 for row in rows], True))
        if sw["knee"] is not None:
            marks.append((sw["knee"], f"knee {label}: {sw['knee']:g}/s"))
    return [lines_svg("Rate sweep: completed and good requests per second", "requests/s", rate_series,
                      xlabel="offered rate (requests/s)", marks=marks),
            lines_svg("Rate sweep: TTFT p50 and p99", "ms", ttft_series,
                      xlabel="offered rate (requests/s)", marks=marks)]


CSS = ("body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:900px;padding:0 1em;color:#222}"
       "h1{font-size:1.5em;margin-bottom:.2em}.meta{color:#666;margin:.2em 0}"
       ".verdict{padding:.6em 1em;border-radius:6px;margin:1em 0;font-weight:600}"
       ".pass{background:#e8f5e9;color:#1b5e20}.fail{background:#fdecea;color:#8e1b10}"
       ".warn{color:#8a4b00;background:#fff4e5;padding:.4em .8em;border-radius:4px}"
       ".target{border-left:6px solid;padding-left:.8em;margin:1em 0}"
       ".target h3{margin:.2em 0 .5em;font-size:1.05em}.target code{color:#555;font-weight:normal}"
       ".sw{display:inline-block;width:.8em;height:.8em;margin-right:.4em}"
       ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:.6em}"
       ".card{background:#f6f8fa;border-radius:6px;padding:.6em .7em}.card.bad{background:#fdecea}"
       ".card .v{font-size:1.25em;font-weight:600}.card .l{color:#444}.card .n{color:#777;font-size:.8em}"
       "table{border-collapse:collapse;font-size:.85em;margin:.5em 0;width:100%}"
       "th,td{padding:.25em .4em;text-align:right;border-bottom:1px solid #eee}"
       "tbody th{text-align:left;vertical-align:top}td.who,th.who{text-align:left;word-break:break-all}"
       "tr.grp td,tr.grp th{border-top:2px solid #ccc}.plot{margin:1.2em 0}"
       "pre{background:#f6f8fa;padding:1em;white-space:pre-wrap;word-break:break-word;font-size:.8em}")


def render(doc, recorders):
    """The whole page; `recorders` are the runs' Recorders (for the raw samples)."""
    runs = doc["runs"]
    names = [r["label"] + ("" if r.get("rate") is None else f" @ {r['rate']:g}/s") + " "
             + r["endpoint"].split("/")[0] for r in runs]
    rows = [r["timeline"]["rows"] for r in runs]
    pairs = list(zip(names, recorders))
    svgs = [
        histogram_svg("Time to first token", "ms", [(n, rec.ttft_ms) for n, rec in pairs]),
        histogram_svg("Gap between content chunks", "ms", [(n, rec.gap_ms) for n, rec in pairs]),
        lines_svg("TTFT over time (p50, p99)", "ms",
                  [s for n, rec in pairs for s in _pct_over_time(n, rec, "req_ttft")]),
        lines_svg("TPOT over time (p50, p99)", "ms",
                  [s for n, rec in pairs for s in _pct_over_time(n, rec, "req_tpot")]),
        lines_svg("Failed requests per second", "failed/s", [_errors_over_time(n, rec) for n, rec in pairs]),
        lines_svg("Chunks per second", "chunks/s", [(n, *_rates(r, 3)) for n, r in zip(names, rows)]),
        lines_svg("Completed requests per second", "requests/s",
                  [(n, *_rates(r, 2)) for n, r in zip(names, rows)]),
        lines_svg("Open streams", "streams in flight",
                  [(n, [x[0] for x in r], [x[5] for x in r]) for n, r in zip(names, rows)]),
        lines_svg("Load tester CPU (% of one core)", "%",
                  [(n, [x[0] for x in r], [x[6] for x in r]) for n, r in zip(names, rows)]),
    ] + _sweep_svgs(doc)
    e = html.escape
    c = doc["config"]
    failed = doc.get("failed") or []
    if failed:
        verdict = f'<div class="verdict fail">FAILED: {"; ".join(e(w) for w in failed)}</div>'
    elif doc.get("sweep"):
        verdict = ('<div class="verdict pass">Rate sweep: ' + "; ".join(
            f"{e(label)} knee {sw['knee']:g} req/s" for label, sw in doc["sweep"].items())
            + " (the highest rate that met the SLOs and --max-error-rate)</div>")
    else:
        verdict = ('<div class="verdict pass">PASSED: errors within --max-error-rate'
                   + (", every SLO met" if c.get("slo") else "") + "</div>")
    warn = "".join(f'<p class="warn">Warning: {e(w)}</p>' for w in doc["warnings"])
    cards = "".join(_cards(r, COLORS[i % 4]) for i, r in enumerate(runs))
    meta = (f'<p class="meta">{e(c.get("shape", ""))}; prompt {e(repr(c.get("prompt")))}; '
            f'{"stream" if c.get("stream", True) else "no stream"}; model {e(str(c.get("model")))}; '
            f'{e(doc["generated_at"])}</p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width\"><title>tornado_grok loadtest</title>"
            f"<style>{CSS}</style></head><body><h1>Load test report</h1>{meta}{verdict}{warn}{cards}"
            f"<h2>Latency</h2>{_latency_table(runs, names)}"
            f"<p class=\"meta\">chunk gap: between content events (vLLM's ITL); TPOT: vLLM's "
            f"(e2e − TTFT) / (tokens − 1); ITL: guidellm's (last − first token) / (tokens − 1).</p>"
            "<h2>Plots</h2>" + "".join(f'<div class="plot">{s}</div>' for s in svgs)
            + f"<h2>Full report</h2><pre>{e(table(doc))}</pre></body></html>\n")
