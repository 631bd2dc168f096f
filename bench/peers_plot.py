"""The gateway beside its peers, from one run of the shared harness: a plot (SVG, no dependency) of
time to first token and throughput, and the headline table (Markdown) that README.md and
docs/performance.md show.

    ../shared/bench/setup_peers.sh          # nginx, a bare Tornado+pycurl relay, Portkey, LiteLLM
    PEERS="direct gut nginx-1w tornado portkey litellm-2w" bench/harness.sh
    python3 bench/peers_plot.py bench/results/<date>-peers.json --svg docs/peers.svg

Every figure comes from the same run, as a ratio to (or a difference from) the mock measured
directly in that run: the machine's noise moves absolute times between runs, much less these.
"""

import argparse
import json
import math
import sys

NAMES = {"gut": "tornado_grok", "nginx-1w": "nginx (1 worker)", "tornado": "bare Tornado+pycurl relay",
         "portkey": "Portkey gateway", "litellm-2w": "LiteLLM proxy (2 workers)", "litellm-1w": "LiteLLM proxy",
         "nginx-auto": "nginx (auto workers)"}


def loadgen(peer: dict, scenario: str) -> dict:
    return ((peer.get("scenarios") or {}).get(scenario) or {}).get("loadgen") or {}


def figures(run: dict) -> list:
    """One row per peer but the direct floor: (name, S1 added TTFT p50 ms, S2/S3/S5 × direct,
    S4 KiB per stream, S4 ok/planned)."""
    peers = run["peers"]
    direct = peers["direct"]
    base = {s: loadgen(direct, s) for s in ("S1", "S2", "S3", "S5")}
    rows = []
    for name in run["meta"]["peers_order"]:
        if name in ("direct", "direct-end") or name not in peers:
            continue
        peer = peers[name]
        s1, s2, s3, s5 = (loadgen(peer, s) for s in ("S1", "S2", "S3", "S5"))
        s4 = (peer.get("scenarios") or {}).get("S4") or {}
        label = NAMES.get(name, name)
        if name == "gut":
            label = peer.get("version") or label
        rows.append({
            "peer": label,
            "ttft": _diff(s1, base["S1"], "ttft_ms", "p50"),
            "s2": _ratio(s2.get("rps"), base["S2"].get("rps")),
            "s3": _ratio(s3.get("chunks_per_s"), base["S3"].get("chunks_per_s")),
            "s5": _ratio(s5.get("rps"), base["S5"].get("rps")),
            "kib": (s4.get("derived") or {}).get("kib_per_stream"),
            "s4_ok": "%s/%s" % (loadgen(peer, "S4").get("ok", "–"), loadgen(peer, "S4").get("requests_planned", "–")),
        })
    return rows


def _diff(peer: dict, base: dict, field: str, stat: str):
    a, b = (peer.get(field) or {}).get(stat), (base.get(field) or {}).get(stat)
    return None if a is None or b is None else a - b


def _ratio(a, b):
    return None if not a or not b else a / b


def table(rows: list) -> str:
    def fmt(value, pattern):
        if value is None:
            return "–"
        if pattern == "%.2f×" and value < 0.01:
            pattern = "%.3f×"  # LiteLLM's throughput is a few thousandths of the floor
        return pattern % value
    out = ["| peer | S1 added TTFT p50 | S2 streams/s × direct | S3 chunks/s × direct | S4 streams ok, KiB/stream "
           "| S5 requests/s × direct |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| %s | %s | %s | %s | %s, %s | %s |" % (
            r["peer"], fmt(r["ttft"], "%+.2f ms"), fmt(r["s2"], "%.2f×"), fmt(r["s3"], "%.2f×"), r["s4_ok"],
            fmt(r["kib"], "%.1f"), fmt(r["s5"], "%.2f×")))
    return "\n".join(out)


def svg(rows: list, title: str) -> str:
    """Two panels of horizontal bars: added TTFT (log scale, less is better) and S2 throughput ×
    direct (more is better)."""
    width, bar, gap, left, panel_w = 900, 22, 8, 230, 300
    height = 70 + len(rows) * (bar + gap) + 40
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
             'font-size="13">' % (width, height),
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="10" y="22" font-size="15" font-weight="bold">%s</text>' % _esc(title)]
    panels = [("S1 added TTFT p50, ms (log; less is better)", "ttft", True, left),
              ("S2 streams/s × direct (more is better)", "s2", False, left + panel_w + 60)]
    for caption, field, log, x0 in panels:
        parts.append('<text x="%d" y="50">%s</text>' % (x0, _esc(caption)))
        values = [r[field] for r in rows if r[field] is not None and (not log or r[field] > 0)]
        top = max(values) if values else 1.0
        low = min(values) if values else 1.0
        for i, r in enumerate(rows):
            y = 65 + i * (bar + gap)
            if x0 == left:
                parts.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (left - 8, y + 16, _esc(r["peer"])))
            value = r[field]
            if value is None:
                continue
            if log:
                lo, hi = math.log10(max(low, 1e-3)) - 0.3, math.log10(max(top, 1e-3))
                share = (math.log10(max(value, 1e-3)) - lo) / ((hi - lo) or 1)
            else:
                share = value / (top or 1)
            w = max(2, int(share * (panel_w - 70)))
            color = "#d9534f" if r["peer"].startswith("tornado_grok") else "#5b8bd9"
            parts.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>' % (x0, y, w, bar, color))
            parts.append('<text x="%d" y="%d">%s</text>' % (x0 + w + 5, y + 16,
                                                             ("%+.2f" if log else "%.2g×") % value))
    parts.append('<text x="10" y="%d" fill="#555">Each bar from the same run of bench/harness.sh (the shared '
                 'harness) on one 2-core machine shared by mock, proxy and load client.</text>' % (height - 12))
    parts.append("</svg>")
    return "\n".join(parts)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="a <date>-peers.json written by the shared harness")
    p.add_argument("--svg", help="write the plot here")
    args = p.parse_args(argv)
    with open(args.results) as f:
        run = json.load(f)
    rows = figures(run)
    print(table(rows))
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(svg(rows, "tornado_grok beside its peers (%s, %d cores)" % (run["meta"]["tag"],
                                                                               run["meta"]["cpus"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
