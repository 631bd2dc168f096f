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
        return f"{v / 1000:g}k" if abs(v) < 1e6 else f"{v / 1e6:g}M"
    return f"{v:.3g}"


def _frame(title, xlabel, ylabel):
    e = html.escape
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{e(title)}</text>',
            f'<text x="{(ML + W - MR) / 2}" y="{H - 6}" text-anchor="middle">{e(xlabel)}</text>',
            f'<text x="14" y="{(MT + H - MB) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 14 {(MT + H - MB) / 2})">{e(ylabel)}</text>',
            f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" stroke="#333"/>',
            f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" stroke="#333"/>']


def _legend(parts, names):
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
                         f'<text x="{x + 3:.1f}" y="{y}" fill="{COLORS[i % 4]}">p{p} {_num(v)}</text>')
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


def lines_svg(title, ylabel, series):
    """Line chart of each (name, xs, ys) series against time in seconds."""
    series = [(n, xs, ys) for n, xs, ys in series if xs]
    parts = _frame(title, "seconds since start", ylabel)
    if not series:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    xmax = max(max(xs) for _, xs, _ in series) or 1.0
    ymax = (max(max(ys) for _, _, ys in series) or 1.0) * 1.1
    pw, ph = W - ML - MR, H - MT - MB

    def sx(v):
        return ML + pw * v / xmax

    def sy(v):
        return H - MB - ph * v / ymax
    _yaxis(parts, ymax, sy)
    for t in _nice_ticks(0, xmax):
        parts.append(f'<text x="{sx(t):.1f}" y="{H - MB + 16}" text-anchor="middle">{_num(t)}</text>')
    for i, (_, xs, ys) in enumerate(series):
        step = max(1, len(xs) // 1500)  # long runs: thin the polyline
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs[::step], ys[::step]))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[i % 4]}" '
                     'stroke-width="1.5"/>')
    _legend(parts, [n for n, _, _ in series])
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


def render(doc, recorders):
    """The whole page; `recorders` are the runs' Recorders (for the raw samples)."""
    runs = doc["runs"]
    names = [f"{r['label']} {r['endpoint'].split('/')[0]}" for r in runs]
    rows = [r["timeline"]["rows"] for r in runs]
    svgs = [
        histogram_svg("Time to first token", "ms",
                      [(n, rec.ttft_ms) for n, rec in zip(names, recorders)]),
        histogram_svg("Gap between content chunks", "ms",
                      [(n, rec.gap_ms) for n, rec in zip(names, recorders)]),
        lines_svg("Chunks per second", "chunks/s", [(n, *_rates(r, 3)) for n, r in zip(names, rows)]),
        lines_svg("Completed requests per second", "requests/s",
                  [(n, *_rates(r, 2)) for n, r in zip(names, rows)]),
        lines_svg("Open streams", "streams in flight",
                  [(n, [x[0] for x in r], [x[5] for x in r]) for n, r in zip(names, rows)]),
        lines_svg("Load tester CPU (% of one core)", "%",
                  [(n, [x[0] for x in r], [x[6] for x in r]) for n, r in zip(names, rows)]),
    ]
    warn = "".join(f'<p class="warn">WARNING: {html.escape(w)}</p>' for w in doc["warnings"])
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tornado_grok loadtest</title>"
            "<style>body{font-family:sans-serif;margin:2em;max-width:820px}"
            "pre{background:#f6f6f6;padding:1em;overflow-x:auto}.warn{color:#b00}</style></head><body>"
            f"<h1>Load test report</h1><p>{html.escape(doc['generated_at'])}</p>{warn}"
            f"<pre>{html.escape(table(doc))}</pre>"
            + "".join(f"<div>{s}</div>" for s in svgs) + "</body></html>\n")
