#!/usr/bin/env python3
"""Memory held by unread resumable streams under the stored-bytes budget, one run.

Starts the bundled mock (`--speed 0`), a redis-server on a free port, and a gateway with small
budgets (`--key-mib`, `--total-mib`: resume_key_bytes, resume_total_bytes), first with
stream_store = "memory", then with "redis". Through each, `--keys` client keys open `-n` resumable
streams of a long answer (`chunks=N size=S` from the mock's generator) between them, `-c` at a
time, and read none: each client reads the response head, then hangs up; the upstream runs to its
end for the store. When no stream runs any more, it prints the gateway's RSS growth over its RSS
after a warm-up, the stored bytes /debug/state counts, how many streams were told
`X-Resumable: false`, and (Redis) redis-server's used_memory growth.

The fixed overhead is measured, not assumed: the same streams first run through a fresh gateway as
plain streams (`X-Resumable: false`, hung up on the same way: the upstream is cancelled), and the
RSS that run grows by (connections, handlers, the upstream's bytes in flight, the allocator's
slack: it grows with the answer's length even though nothing is kept) is the overhead. A line says
whether the resumable run's growth is under the total budget plus that overhead plus
`--margin-mib`; for Redis, used_memory against the total budget plus `--margin-mib` (the budget
counts the events' bytes; Redis adds its own per-entry and per-key memory).

With `--unbudgeted` the same streams run through gateways whose budgets are too large to matter:
the growth the budget prevents.

Figures are printed, never asserted.

    python3 bench/resumable_budget.py                    # 1,000 streams, 4 keys, 8 MiB a key, 16 MiB in all
    python3 bench/resumable_budget.py --unbudgeted -n 300
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procstats import debug_state, drive, rss_kib, start_redis, stop_all  # noqa: E402
from bench.responses_vs_chat import ROOT, start  # noqa: E402
from bench.resumable import free_port  # noqa: E402

MIB = 1024 * 1024


def add_keys(keys_file: str, n: int) -> list:
    return [subprocess.run([sys.executable, "run.py", "keys", "add", "budget%d" % i, "--keys-file", keys_file,
                            "--rpm", "100000000", "--concurrency", "1000000"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip() for i in range(n)]


def open_unread(port: int, keys: list, streams: int, concurrency: int, prompt: str, resumable: bool) -> dict:
    """`streams` streams (resumable or plain), keys in turn, each hung up on after its response head."""
    body = json.dumps({"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()
    told = {"resumable": 0, "not resumable": 0}
    lock = threading.Lock()
    turn = iter(range(streams))

    def one(conn) -> int:
        with lock:
            key = keys[next(turn) % len(keys)]
        conn.request("POST", "/api/v1/chat/completions", body,
                     {"Authorization": "Bearer " + key, "Content-Type": "application/json",
                      "X-Resumable": "true" if resumable else "false"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(response.status)
        with lock:
            told["not resumable" if response.getheader("X-Resumable") == "false" else "resumable"] += 1
        conn.close()  # read none: the stream goes on without this client
        return 0

    drive(port, one, streams, concurrency)
    return told


def wait_idle(url: str, timeout: float = 600) -> dict:
    """/debug/state once no resumable stream runs (polled: the bench's own clock, not a test's)."""
    deadline = time.monotonic() + timeout
    while True:
        state = debug_state(url)
        if state["resumable"]["running"] == 0 or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def run(label: str, genv: dict, upstream: list, keys: list, args, redis_client, resumable: bool = True,
        overhead: float = 0.0) -> float:
    """One fresh gateway through which the streams run; returns its RSS growth in MiB."""
    gw, port = start([sys.executable, "run.py", "--port", "0"] + upstream, genv)
    url = "http://127.0.0.1:%d" % port
    try:
        warm = "chunks=50 size=%d" % args.size
        drive(port, lambda conn: _read_one(conn, keys[0], warm), 50, 4)  # plain streams: the baseline's warm-up
        base_rss = rss_kib(gw.pid)
        base_redis = redis_client.info("memory")["used_memory"] if redis_client is not None else 0
        started = time.monotonic()
        told = open_unread(port, keys, args.streams, args.concurrency,
                           "chunks=%d size=%d" % (args.chunks, args.size), resumable)
        state = wait_idle(url)
        grown = (rss_kib(gw.pid) - base_rss) / 1024
        if not resumable:
            print("%s, plain streams (the overhead): %d streams in %.0f s, gateway RSS growth %.1f MiB"
                  % (label, args.streams, time.monotonic() - started, grown))
            return grown
        budget = state["resumable"].get("budget", {})
        total_mib = genv["TG_RESUME_TOTAL_BYTES"] and int(genv["TG_RESUME_TOTAL_BYTES"]) / MIB
        print("%s: %d streams in %.0f s (%d resumable, %d told X-Resumable: false), budget %s MiB a key, %s MiB in all"
              % (label, args.streams, time.monotonic() - started, told["resumable"], told["not resumable"],
                 "%g" % (int(genv["TG_RESUME_KEY_BYTES"]) / MIB), "%g" % total_mib))
        print("  stored events kept: %.1f MiB in %d streams (/debug/state budget bytes %.1f MiB)"
              % (state["resumable"]["bytes"] / MIB, state["resumable"]["streams"], budget.get("bytes", 0) / MIB))
        print("  gateway RSS growth: %.1f MiB, %.1f over the plain run's (%s the budget + the plain run's "
              "%.1f MiB + %d MiB margin)" % (grown, grown - overhead, "under" if grown <= total_mib + overhead
                                             + args.margin_mib else "OVER", overhead, args.margin_mib))
        if redis_client is not None:
            rgrown = (redis_client.info("memory")["used_memory"] - base_redis) / MIB
            print("  redis-server used_memory growth: %.1f MiB (%s the budget + %d MiB margin)"
                  % (rgrown, "under" if rgrown <= total_mib + args.margin_mib else "OVER", args.margin_mib))
        return grown
    finally:
        stop_all([gw])


def _read_one(conn, key: str, prompt: str) -> int:
    body = json.dumps({"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()
    conn.request("POST", "/api/v1/chat/completions", body, {"Authorization": "Bearer " + key,
                                                            "Content-Type": "application/json"})
    return len(conn.getresponse().read())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--streams", type=int, default=1000)
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--chunks", type=int, default=1000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("-c", "--concurrency", type=int, default=32)
    p.add_argument("--key-mib", type=float, default=8)
    p.add_argument("--total-mib", type=float, default=16)
    p.add_argument("--margin-mib", type=int, default=8)
    p.add_argument("--unbudgeted", action="store_true", help="budgets of 1 TiB (too large to matter)")
    p.add_argument("--store", choices=("memory", "redis", "both"), default="both")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="resumable-budget-")
    keys_file = os.path.join(work, "keys.json")
    keys = add_keys(keys_file, args.keys)
    env = dict(os.environ, TG_ACCESS_LOG="false", PYTHONUNBUFFERED="1")
    env.pop("XAI_API_KEY", None)
    redis_port = free_port()
    procs = []
    try:
        rs, client = start_redis(redis_port, procs)
        mock, mock_port = start([sys.executable, "-m", "mock_upstream", "--port", "0", "--speed", "0"], env)
        procs.append(mock)
        upstream = ["--upstream-url", "http://127.0.0.1:%d/v1" % mock_port, "--keys-file", keys_file]
        key_bytes, total_bytes = int(args.key_mib * MIB), int(args.total_mib * MIB)
        if args.unbudgeted:
            key_bytes = total_bytes = 1 << 40
        genv = dict(env, XAI_API_KEY="bench-upstream-key", TG_DEBUG_ENDPOINTS="true",
                    TG_RESUME_KEY_BYTES=str(key_bytes), TG_RESUME_TOTAL_BYTES=str(total_bytes),
                    TG_RESUME_WINDOW="600")
        if args.store in ("memory", "both"):
            overhead = run("memory store", genv, upstream, keys, args, None, resumable=False)
            run("memory store", genv, upstream, keys, args, None, overhead=overhead)
        if args.store in ("redis", "both"):
            client.flushall()
            renv = dict(genv, TG_STREAM_STORE="redis", TG_REDIS_URL="redis://127.0.0.1:%d/0" % redis_port)
            overhead = run("redis store", renv, upstream, keys, args, None, resumable=False)
            client.flushall()
            run("redis store", renv, upstream, keys, args, client, overhead=overhead)
    finally:
        stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
