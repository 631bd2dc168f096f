"""Which chunk gaps make S4's gap p99: 1,000 streams of 10 chunks a second apart, opened at once on a
fresh process (as in the harness's S4), through the gateway (every feature on) and the bare
Tornado+pycurl relay, in alternated rounds. Prints each round's TTFT p99 and gap p99, and for the
gaps at or above that p99, the index of the chunk that ended them and when they ended.

    python3 bench/burst_gaps.py [--rounds 3] [--only "gateway relay"]

The harness's loadgen (../shared/bench/loadgen.js) keeps only the gaps' percentiles; a copy of it,
patched here to also write each gap (chunk index, ms since start, gap ms), is what runs. Needs
Node.js. Loopback only; bounded.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.procstats import stop_all  # noqa: E402
from bench.suspects import SHARED, VARIANTS, key_and_mock, start  # noqa: E402

SCENARIO = "chunks=10 delay=1000 size=8"  # S4's
_PATCHES = (  # (what loadgen.js says, what the copy says instead)
    ("if (!tFirst) tFirst = now; else st.gap.push(now - tPrev);",
     "if (!tFirst) tFirst = now; else { st.gap.push(now - tPrev); "
     "GAPS.push([chunks, Math.round(now - tStart), Math.round(now - tPrev)]); }"),
    ("function main() {", "const GAPS = [];\nfunction main() {"),
    ("    process.stdout.write(JSON.stringify(out) + '\\n');",
     "    process.stdout.write(JSON.stringify(out) + '\\n');\n"
     "    require('fs').writeFileSync(process.env.GAP_DUMP, JSON.stringify(GAPS));"),
)


def patched_loadgen(scratch: str) -> str:
    with open(os.path.join(SHARED, "loadgen.js")) as f:
        text = f.read()
    for old, new in _PATCHES:
        if text.count(old) != 1:
            raise SystemExit("../shared/bench/loadgen.js has changed: %r is not in it once" % old)
        text = text.replace(old, new)
    path = os.path.join(scratch, "loadgen_gaps.js")
    with open(path, "w") as f:
        f.write(text)
    return path


def burst(loadgen: str, url: str, headers: dict, pid: int, dump: str) -> tuple:
    out = subprocess.run(
        ["node", loadgen, "--url", url, "-c", "1000", "-n", "1000", "--scenario", SCENARIO, "--stream", "true",
         "--headers", json.dumps(headers), "--timeout", "90", "--duration", "60", "--watch-pid", str(pid)],
        capture_output=True, text=True, timeout=180, env=dict(os.environ, GAP_DUMP=dump))
    result = json.loads(out.stdout)
    with open(dump) as f:
        return result, json.load(f)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="gateway relay", help="variants of bench/suspects.py: " + " ".join(VARIANTS))
    args = p.parse_args()
    scratch = tempfile.mkdtemp()
    loadgen = patched_loadgen(scratch)
    keys, key, mock, mock_base = key_and_mock(scratch)
    print("| round | variant | ok | TTFT p99 ms | gap p99 ms | gaps at or above p99: by chunk index | their end, ms from start |")
    print("|---|---|---|---|---|---|---|")
    try:
        for r in range(1, args.rounds + 1):
            for v in args.only.split():
                proc, url, headers = start(v, mock_base, keys, key, scratch)  # a fresh process, no warm-up
                try:
                    result, gaps = burst(loadgen, url, headers, proc.pid, os.path.join(scratch, "gaps.json"))
                finally:
                    stop_all([proc])
                ordered = sorted(g[2] for g in gaps)
                p99 = ordered[int(len(ordered) * 0.99)]
                late = [g for g in gaps if g[2] >= p99]
                by_index = {}
                for g in late:
                    by_index[g[0]] = by_index.get(g[0], 0) + 1
                ends = [g[1] for g in late]
                print("| %d | %s | %d | %.0f | %d | %s | %d-%d (median %d) |" % (
                    r, v, result["ok"], result["ttft_ms"]["p99"], p99,
                    ", ".join("%d: %d" % kv for kv in sorted(by_index.items())),
                    min(ends), max(ends), statistics.median(ends)), flush=True)
    finally:
        stop_all([mock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
