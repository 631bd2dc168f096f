#!/usr/bin/env python3
"""N concurrent long-lived streams through the gateway: errors, gaps and memory per stream.

Starts the shared harness's mock (../shared/bench/mock_sse.js, Node) and the gateway on loopback,
holds N streams open at once (one chunk a second for `--chunks` seconds, like the harness's S4),
and prints the gateway's RSS (process tree) before and at peak, KiB per stream, and what the load
client saw. Figures are printed, never asserted. Everything stops by itself.

    python3 bench/many_streams.py                  # 10,000 streams, 2 worker processes
    python3 bench/many_streams.py -n 1000 --workers 1

Why two workers for 10,000: each stream holds two sockets in the gateway (client and upstream), and
this machine's hard limit is 20,000 open files per process; two processes on one port hold 10,000
streams with room to spare. The memory figure covers both (the whole process tree).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.procstats import free_port, stop_all, wait_port  # noqa: E402

SHARED_BENCH = os.path.join(os.path.dirname(ROOT), "shared", "bench")



def tree_rss_kib(pid: int) -> int:
    """RSS of pid and its descendants, in KiB."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    members, changed = {pid}, True
    while changed:
        changed = False
        for p, pp, _ in rows:
            if pp in members and p not in members:
                members.add(p)
                changed = True
    return sum(rss for p, _, rss in rows if p in members)



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--streams", type=int, default=10000)
    p.add_argument("--chunks", type=int, default=10, help="chunks per stream, one a second")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the children
    if shutil.which("node") is None or not os.path.exists(os.path.join(SHARED_BENCH, "mock_sse.js")):
        raise SystemExit("needs node and ../shared/bench (mock_sse.js, loadgen.js)")

    work = tempfile.mkdtemp(prefix="many-streams-")
    keys = os.path.join(work, "keys.json")
    key = subprocess.run([sys.executable, "run.py", "keys", "add", "bench", "--keys-file", keys,
                          "--rpm", "100000000", "--concurrency", "1000000"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip()
    mock_port, gw_port = free_port(), free_port()
    procs = []
    try:
        mock = subprocess.Popen(["node", os.path.join(SHARED_BENCH, "mock_sse.js"), str(mock_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mock)
        wait_port(mock_port)
        env = dict(os.environ, XAI_API_KEY="bench-upstream-key", TG_ACCESS_LOG="false")
        gateway = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(gw_port), "--upstream-url",
             "http://127.0.0.1:%d/v1" % mock_port, "--keys-file", keys, "--workers", str(args.workers)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(gateway)
        wait_port(gw_port)
        time.sleep(1.0)  # let every worker start listening (a settle time for a benchmark, not a test)
        idle = tree_rss_kib(gateway.pid)
        peak = [idle]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.25):
                peak[0] = max(peak[0], tree_rss_kib(gateway.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        load = subprocess.run(
            ["node", os.path.join(SHARED_BENCH, "loadgen.js"),
             "--url", "http://127.0.0.1:%d/api/v1/chat/completions" % gw_port,
             "-c", str(args.streams), "-n", str(args.streams),
             "--scenario", "chunks=%d delay=1000 size=8" % args.chunks,
             "--headers", json.dumps({"Authorization": "Bearer " + key}),
             "--duration", str(args.chunks + 60), "--timeout", "120"],
            capture_output=True, text=True, timeout=args.chunks + 300)
        stop.set()
        sampler.join()
        result = json.loads(load.stdout) if load.stdout.strip() else {}
        print("streams %d, %d workers, %.0f s" % (args.streams, args.workers, time.monotonic() - started))
        print("  ok %s, errors %s" % (result.get("ok"), result.get("errors")))
        for name in ("ttft_ms", "gap_ms", "total_ms"):
            st = result.get(name) or {}
            print("  %-9s p50 %s  p99 %s  max %s" % (name, st.get("p50"), st.get("p99"), st.get("max")))
        print("  gateway RSS idle %.1f MiB, peak %.1f MiB: %.1f KiB per stream"
              % (idle / 1024, peak[0] / 1024, (peak[0] - idle) / args.streams))
        if load.returncode:
            print("  load client exited %d: %s" % (load.returncode, load.stderr[-500:]))
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
