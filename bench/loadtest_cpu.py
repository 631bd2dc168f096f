"""The load tester's own CPU per 1,000 streams. Prints figures, asserts nothing.

    python bench/loadtest_cpu.py [--root DIR] [--repeat 3]

Runs `python -m tornado_grok.loadtest` (from --root, default this checkout: point it at another
checkout, e.g. `git worktree add /tmp/lt-before main`, to compare versions) against the shared
harness's Node mock (../shared/bench/mock_sse.js; tests/sse_target.py when node is absent) in two
loads, and prints the tester's own CPU time (its `self.cpu_s`, process time) per 1,000 streams:

- fast: -c 64 -n 4000, 20 chunks back to back (parsing-bound: the per-chunk path);
- slow: -c 1000 -n 2000, 10 chunks 100 ms apart (many open streams, few bytes).

Each load runs --repeat times; the median is printed (the machine is shared: read the median).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadtest_capacity import ROOT, start_server  # noqa: E402

LOADS = {
    "fast": ["-c", "64", "-n", "4000", "--prompt", "chunks=20 delay=0 size=8"],
    "slow": ["-c", "1000", "-n", "2000", "--prompt", "chunks=10 delay=100 size=8", "--ramp-up", "0.5"],
}


def run(root, url, argv):
    cmd = [sys.executable, "-m", "tornado_grok.loadtest", "--url", url, "--json", "--no-progress",
           "--timeout", "60"] + argv
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if not p.stdout.strip():
        raise SystemExit(f"loadtest exited {p.returncode}: {p.stderr[-2000:]}")
    doc = json.loads(p.stdout)
    run_ = doc["runs"][0]
    return run_["summary"], run_["self"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=ROOT, help="checkout whose load tester is measured")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server, url = start_server("node" if shutil.which("node") else "python")
    try:
        for name, argv in LOADS.items():
            per_k, chunks_k, ok = [], [], []
            for _ in range(args.repeat):
                s, me = run(args.root, url, argv)
                per_k.append(me["cpu_s"] / max(1, s["finished"]) * 1000)
                chunks_k.append(me["cpu_s"] / max(1, s["chunks"]) * 1e6)
                ok.append(f"{s['ok']}/{s['finished']}")
            print(f"{name}: {' '.join(argv)}: load tester CPU {statistics.median(per_k):.3f} s per 1,000 "
                  f"streams ({statistics.median(chunks_k):.2f} ms per 1,000 chunks); runs "
                  f"{', '.join(f'{x:.3f}' for x in per_k)} s/1k; ok {', '.join(ok)}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
