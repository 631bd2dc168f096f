"""The gateway's tails and CPU against the bare Tornado+pycurl relay, from one peers run of the shared
harness: the ratios the tails work is held to (S4 TTFT p99 no worse than the relay's; S5 and S2 p99
within 1.2x; CPU per stream (S2) and per chunk (S3) within 1.1x).

    ../shared/bench/setup_peers.sh
    PEERS="direct gut tornado" bench/harness.sh      # or the full peers run
    python3 bench/tails.py bench/results/<date>-peers.json

Both peers come from the same run, so the machine's drift between runs falls on both alike. Given
several runs (`bench/tails.sh --runs N`), it prints each run's ratio, their median and how many runs
met the target: on a shared machine one run's ratio can swing by ±0.2 or more.
"""

import argparse
import json
import statistics
import sys

# (label, scenario, statistic, target ratio gateway / relay; None: shown, not a target)
MEASURES = (
    ("S4: 1,000 streams opened at once, TTFT p99", "S4", ("loadgen", "ttft_ms", "p99"), 1.0),
    ("S5: 32 concurrent whole answers, latency p99", "S5", ("loadgen", "total_ms", "p99"), 1.2),
    ("S2: 64 concurrent streams, TTFT p99", "S2", ("loadgen", "ttft_ms", "p99"), 1.2),
    ("S2: CPU per stream (ms)", "S2", ("derived", "proxy_cpu_ms_per_req"), 1.1),
    ("S3: CPU per relayed chunk (µs)", "S3", ("derived", "proxy_cpu_us_per_chunk"), 1.1),
    # S5 lasts about two seconds: a slow phase of the machine under one peer moves its p99 and its
    # CPU per answer alike; the tail's shape (p99 / p50) moves much less.
    ("S5: CPU per whole answer (ms)", "S5", ("derived", "proxy_cpu_ms_per_req"), None),
    ("S5: latency p99 / p50", "S5", "p99/p50", None),
)


def value(peer: dict, scenario: str, path):
    node = (peer.get("scenarios") or {}).get(scenario) or {}
    if path == "p99/p50":
        total = (node.get("loadgen") or {}).get("total_ms") or {}
        return total["p99"] / total["p50"] if total.get("p50") else None
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def rows(run: dict, gateway: str = "gut", relay: str = "tornado") -> list:
    peers = run["peers"]
    if gateway not in peers or relay not in peers:
        raise SystemExit("the run has no %r or no %r peer: run the harness with PEERS including both" % (gateway, relay))
    out = []
    for label, scenario, path, target in MEASURES:
        g, r = value(peers[gateway], scenario, path), value(peers[relay], scenario, path)
        ratio = g / r if isinstance(g, (int, float)) and isinstance(r, (int, float)) and r else None
        out.append((label, r, g, ratio, target))
    return out


def _target(target) -> str:
    return "at most %.1f×" % target if target else "(context)"


def _fmt(v) -> str:
    return "–" if v is None else ("%.0f" % v if v >= 100 else "%.3g" % v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="<date>-peers.json files of the shared harness with the gut and "
                                              "tornado peers (one run, or several for medians)")
    args = p.parse_args(argv)
    runs = []
    for path in args.results:
        with open(path) as f:
            runs.append(rows(json.load(f)))
    if len(runs) == 1:
        print("| measure (one run) | bare relay | gateway | gateway / relay | target |")
        print("|---|---|---|---|---|")
        for label, relay, gateway, ratio, target in runs[0]:
            print("| %s | %s | %s | %s | %s |" % (label, _fmt(relay), _fmt(gateway),
                                                 "–" if ratio is None else "%.2f×" % ratio, _target(target)))
        return 0
    print("| measure (%d runs) | gateway / relay, each run | median | runs within target | target |" % len(runs))
    print("|---|---|---|---|---|")
    for i, (label, _, _, _, target) in enumerate(runs[0]):
        ratios = [run[i][3] for run in runs]
        measured = [r for r in ratios if r is not None]  # a run of some scenarios lacks the others
        print("| %s | %s | %s | %s | %s |" % (
            label, ", ".join("–" if r is None else "%.2f×" % r for r in ratios),
            "%.2f×" % statistics.median(measured) if measured else "–",
            "%d of %d" % (sum(r <= target for r in measured), len(measured)) if target else "–",
            _target(target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
