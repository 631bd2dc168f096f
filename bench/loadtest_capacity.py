"""Can the load tester hold 5,000 concurrent slow streams? Prints figures, asserts nothing.

    python bench/loadtest_capacity.py [--streams 5000] [--prompt "chunks=10 delay=1000 size=8"]
                                      [--server python|node] [--ramp-up S (default 2)]

Starts a target in a subprocess on a free loopback port (tests/sse_target.py, or with
`--server node` the shared harness's mock ../shared/bench/mock_sse.js), then runs
`python -m tornado_grok.loadtest` with --concurrency = --requests = STREAMS (started over
--ramp-up seconds, shorter than one stream, so all are open together), and prints whether all
completed, the peak number of open streams, and the load tester's own CPU and RSS. With
`--ramp-up 0` all connections are opened in the same instant: the resulting burst of event-loop
lag is reported too.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.procstats import free_port  # noqa: E402

NODE_MOCK = os.path.join(os.path.dirname(ROOT), "shared", "bench", "mock_sse.js")



def start_server(kind):
    """Returns (process, base URL)."""
    if kind == "node":
        port = free_port()
        proc = subprocess.Popen(["node", NODE_MOCK, str(port)], stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, MOCK_HOST="127.0.0.1"))
        proc.stdout.readline()  # the mock announces itself once it listens
        return proc, f"http://127.0.0.1:{port}/v1"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "sse_target.py")],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=5000)
    p.add_argument("--prompt", default="chunks=10 delay=1000 size=8")
    p.add_argument("--server", choices=("python", "node"), default="python")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--ramp-up", type=float, default=2.0,
                   help="seconds over which to start the streams (default %(default)s; 0: all at once)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by both children
    server, url = start_server(args.server)
    try:
        cmd = [sys.executable, "-m", "tornado_grok.loadtest", "--url", url,
               "-c", str(args.streams), "-n", str(args.streams), "--prompt", args.prompt,
               "--timeout", str(args.timeout), "--ramp-up", str(args.ramp_up), "--json", "--no-progress"]
        t0 = time.perf_counter()
        lt = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait()
    if lt.returncode not in (0, 1) or not lt.stdout.strip():  # 1: failed checks, report still printed
        print(f"loadtest exited {lt.returncode}: {lt.stderr[-2000:]}")
        return
    doc = json.loads(lt.stdout)
    run = doc["runs"][0]
    s, me = run["summary"], run["self"]
    peak_open = max((row[5] for row in run["timeline"]["rows"]), default=0)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"target: {args.server} ({url}), prompt {args.prompt!r}, {args.streams} concurrent streams"
          f"{f', ramp-up {args.ramp_up:g} s' if args.ramp_up else ''}")
    print(f"completed: {s['ok']}/{args.streams} ok ({'ALL' if s['ok'] == args.streams else 'NOT ALL'}); "
          f"ends {s['ends']}; peak open streams {peak_open}; "
          f"connections opened {run['connections_opened']}")
    print(f"latency ms: TTFT p50 {s['ttft_ms'] and s['ttft_ms']['p50']} p99 "
          f"{s['ttft_ms'] and s['ttft_ms']['p99']}; gap p50 {s['gap_ms'] and s['gap_ms']['p50']} "
          f"p99 {s['gap_ms'] and s['gap_ms']['p99']}; total max {s['total_ms'] and s['total_ms']['max']}")
    print(f"load tester: cpu {me['cpu_s']:.2f} s over {me['wall_s']:.1f} s wall = "
          f"{me['cpu_pct_of_one_core']:.0f}% of one core (peak interval {me['peak_interval_cpu_pct']}%); "
          f"loop lag p99 {me['loop_lag_ms_p99']} ms; waited {me['cpu_wait_s']} s for a CPU; rss {me['rss_mib_start']} -> {me['rss_mib_max']} MiB "
          f"(~{(me['rss_mib_max'] - me['rss_mib_start']) * 1024 / max(1, args.streams):.1f} KiB/stream)")
    print(f"whole run {wall:.1f} s; children (target + load tester) cpu "
          f"{child.ru_utime + child.ru_stime:.1f} s; warnings: {me['warnings'] or 'none'}")


if __name__ == "__main__":
    main()
