"""Where the gateway's tail latency and CPU come from: the gateway as shipped, the same gateway with
one suspect taken away at a time, and the bare Tornado+pycurl relay, in alternated rounds of one run.

    python3 bench/suspects.py [--rounds 2] [--only "gateway -access-log relay"] [--quick]

Uses the shared harness's pieces (../shared/bench: mock_sse.js, loadgen.js, tornado_min_proxy.py;
Node.js). Four short scenarios after a warm-up, each a scaled-down scenario of the harness:

  burst   1000 streams opened at once (S4): TTFT p99
  whole   32 concurrent whole answers (S5): latency p99
  streams 64 concurrent streams of 20 chunks (S2): TTFT p99, CPU per stream
  chunks  64 concurrent streams of 200 chunks (S3): CPU per relayed chunk

CPU is the measured process's own during the measured part (loadgen's --watch-pid). Printed: the
median over rounds of each figure, and its ratio to the shipped gateway's and to the relay's. The
suspects that are settings are taken away with the setting; the others by bench/suspect_gateway.py.
Loopback only; every run is bounded.
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
from bench.procstats import free_port, stop_all, wait_port  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")

# name: (suspect for suspect_gateway.py, TG_* settings); "relay" is the bare relay
VARIANTS = {
    "gateway": ("none", {}),
    "-screening": ("screening", {}),
    "-keys-stat": ("keys-stat", {}),
    "-access-log": ("none", {"TG_ACCESS_LOG": "false"}),
    "-gc": ("gc", {}),
    "gc-defaults": ("gc-policy", {}),
    "-timers": ("timers", {}),
    "-accept-loop": ("accept-loop", {}),
    "backlog-128": ("none", {"TG_LISTEN_BACKLOG": "128"}),
    "asyncio": ("none", {"TG_EVENT_LOOP": "asyncio"}),
    "-metrics": ("metrics", {}),
    "-grpc": ("none", {"TG_GRPC_ENABLED": "false"}),
    "relay": None,
}

# name: (concurrency, requests, mock scenario, stream, figures wanted)
SCENARIOS = {
    "burst": (1000, 1000, "chunks=2 delay=1000 size=8", True),
    "whole": (32, 3000, "chunks=20 delay=0 size=8", False),
    "streams": (64, 3000, "chunks=20 delay=0 size=8", True),
    "chunks": (64, 1000, "chunks=200 delay=0 size=8", True),
}
FIGURES = (  # (label, scenario, how to read it from loadgen's result)
    ("burst TTFT p99 ms", "burst", lambda r: r["ttft_ms"]["p99"]),
    ("whole p50 ms", "whole", lambda r: r["total_ms"]["p50"]),
    ("whole p99 ms", "whole", lambda r: r["total_ms"]["p99"]),
    ("streams TTFT p99 ms", "streams", lambda r: r["ttft_ms"]["p99"]),
    ("CPU ms/stream", "streams", lambda r: 1e3 * r["cpu_s"] / r["ok"]),
    ("CPU µs/chunk", "chunks", lambda r: 1e6 * r["cpu_s"] / r["content_chunks"]),
)


def loadgen(url: str, headers: dict, pid: int, c: int, n: int, scenario: str, stream: bool) -> dict:
    out = subprocess.run(
        ["node", os.path.join(SHARED, "loadgen.js"), "--url", url, "-c", str(c), "-n", str(n),
         "--scenario", scenario, "--stream", "true" if stream else "false", "--headers", json.dumps(headers),
         "--timeout", "60", "--duration", "60", "--watch-pid", str(pid)],
        capture_output=True, text=True, timeout=180)
    result = json.loads(out.stdout)
    result["cpu_s"] = (result.get("watched_cpu_s") or {}).get(str(pid))
    if result["ok"] != n:
        print("  %s: %d of %d ok (%s)" % (scenario, result["ok"], n, result.get("errors_by_kind")), file=sys.stderr)
    return result


def key_and_mock(scratch: str) -> tuple:
    """A client key with limits no bench reaches (in scratch/keys.json) and the shared harness's mock
    on a free port, listening: (keys file, key, the mock's process, its base URL)."""
    keys = os.path.join(scratch, "keys.json")
    key = subprocess.run([sys.executable, "run.py", "keys", "add", "bench", "--keys-file", keys, "--rpm",
                          "100000000", "--concurrency", "1000000"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    port = free_port()
    mock = subprocess.Popen(["node", os.path.join(SHARED, "mock_sse.js"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, mock)
    except BaseException:
        stop_all([mock])
        raise
    return keys, key, mock, "http://127.0.0.1:%d" % port


def start(variant: str, mock_base: str, keys: str, key: str, scratch: str):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
    if VARIANTS[variant] is None:
        cmd = [sys.executable, os.path.join(SHARED, "tornado_min_proxy.py"), "--port", str(port),
               "--upstream", mock_base]
        url, headers = "http://127.0.0.1:%d/v1/chat/completions" % port, {}
    else:
        suspect, settings = VARIANTS[variant]
        env.update(settings, XAI_API_KEY="bench-upstream-key", TG_ID_SECRET_FILE=os.path.join(scratch, "id_secret"))
        cmd = [sys.executable, os.path.join(ROOT, "bench", "suspect_gateway.py"), suspect, "--port", str(port),
               "--grpc-port", "0", "--upstream-url", mock_base + "/v1", "--keys-file", keys]
        url, headers = "http://127.0.0.1:%d/api/v1/chat/completions" % port, {"Authorization": "Bearer " + key}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, url, headers


def measure(variant: str, mock_base: str, keys: str, key: str, scratch: str, scale: float, scenarios) -> dict:
    proc, url, headers = start(variant, mock_base, keys, key, scratch)
    try:
        loadgen(url, headers, proc.pid, 64, int(600 * scale), "chunks=20 delay=0 size=8", True)  # warm-up
        results = {}
        for name in scenarios:
            c, n, scenario, stream = SCENARIOS[name]
            n = max(c, int(n * scale)) if name != "burst" else n
            results[name] = loadgen(url, headers, proc.pid, c, n, scenario, stream)
        return {label: read(results[sc]) for label, sc, read in FIGURES if sc in results}
    finally:
        stop_all([proc])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", help="variants to run, space-separated (default: all): " + " ".join(VARIANTS))
    p.add_argument("--quick", action="store_true", help="a third of the requests (not the burst)")
    p.add_argument("--scenarios", help="scenarios to run, space-separated (default: all): " + " ".join(SCENARIOS))
    args = p.parse_args()
    if not os.path.exists(os.path.join(SHARED, "loadgen.js")):
        raise SystemExit("needs ../shared/bench (mock_sse.js, loadgen.js) beside the checkout")
    variants = args.only.split() if args.only else list(VARIANTS)
    scenarios = args.scenarios.split() if args.scenarios else list(SCENARIOS)
    figures = [f for f in FIGURES if f[1] in scenarios]
    scratch = tempfile.mkdtemp()
    keys, key, mock, mock_base = key_and_mock(scratch)
    table: dict = {v: [] for v in variants}
    try:
        for r in range(args.rounds):
            for v in variants:
                print("round %d: %s" % (r + 1, v), file=sys.stderr)
                table[v].append(measure(v, mock_base, keys, key, scratch, 1 / 3 if args.quick else 1, scenarios))
    finally:
        stop_all([mock])
    medians = {v: {label: statistics.median(run[label] for run in runs) for label, _, _ in figures}
               for v, runs in table.items()}
    print("median of %d alternated rounds; in brackets: / the shipped gateway, / the bare relay" % args.rounds)
    print("| variant | " + " | ".join(label for label, _, _ in figures) + " |")
    print("|---" * (len(figures) + 1) + "|")
    for v in variants:
        cells = []
        for label, _, _ in figures:
            x = medians[v][label]
            ratios = [("%.2f" % (x / medians[base][label])) if base in medians and base != v else "–"
                      for base in ("gateway", "relay")]
            cells.append("%s (%s)" % ("%.0f" % x if x >= 100 else "%.3g" % x, ", ".join(ratios)))
        print("| %s | %s |" % (v, " | ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
