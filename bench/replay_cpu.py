#!/usr/bin/env python3
"""Gateway CPU per replay of a long stored Responses stream, one run.

Starts the bundled mock (`--speed 0`), a redis-server on a free port, gateway M (stream_store =
"memory") and gateways A and B (stream_store = "redis", one Redis) from this checkout, and, with
`--baseline-root DIR`, the same three from another checkout (e.g. `git archive f1a7ef5` unpacked:
the before figure). In each set, one resumable Responses stream of `--chunks` text deltas is read
whole (through M, and through A), then `-n` requests
`GET /api/v1/responses/{id}?stream=true&starting_after=999999999999` (past its last event: nothing
to send, all cost is finding the start) are made through M (the stream in its memory) and through B
(the stream in Redis, relayed by A), one at a time. It prints the gateway's CPU (user + system,
/proc/PID/stat) per request, and, for B, redis-server's.

The key is unlimited (its resume budget is ten times its request rate), so every request is
answered. Figures are printed, never asserted.

    python3 bench/replay_cpu.py                              # 5,000 deltas, 100 replays
    python3 bench/replay_cpu.py --baseline-root /tmp/before  # and the same through an older checkout
"""

import argparse
import http.client
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procstats import bench_key, start_redis, stop_all  # noqa: E402
from bench.responses_vs_chat import ROOT, cpu_seconds, start  # noqa: E402
from bench.resumable import free_port  # noqa: E402


def request(port: int, method: str, path: str, key: str, body: bytes | None = None, **headers) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body, dict({"Authorization": "Bearer " + key,
                                               "Content-Type": "application/json"}, **headers))
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError("HTTP %d: %r" % (response.status, data[:200]))
        return data
    finally:
        conn.close()


def store_one(port: int, key: str, chunks: int) -> tuple:
    """One resumable Responses stream read whole: (its response id, its events)."""
    body = json.dumps({"model": "bench", "stream": True, "input": "chunks=%d size=8" % chunks}).encode()
    data = request(port, "POST", "/api/v1/responses", key, body, **{"X-Resumable": "true"})
    first = data.split(b"\ndata: ", 1)[1].split(b"\n", 1)[0]
    return json.loads(first)["response"]["id"], data.count(b"\n\n")


def replay_cpu(proc, port: int, key: str, response_id: str, n: int, redis_proc=None) -> tuple:
    path = "/api/v1/responses/%s?stream=true&starting_after=999999999999" % response_id
    request(port, "GET", path, key)  # warm-up
    before = cpu_seconds(proc.pid)
    rbefore = cpu_seconds(redis_proc.pid) if redis_proc is not None else 0.0
    for _ in range(n):
        assert request(port, "GET", path, key) == b""
    gateway = (cpu_seconds(proc.pid) - before) / n
    redis_cpu = (cpu_seconds(redis_proc.pid) - rbefore) / n if redis_proc is not None else 0.0
    return gateway, redis_cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--replays", type=int, default=100)
    p.add_argument("--chunks", type=int, default=5000)
    p.add_argument("--baseline-root", help="another checkout measured the same way (the before figure)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="replay-cpu-")
    key, env = bench_key(ROOT, work)
    keys = os.path.join(work, "keys.json")
    redis_port = free_port()
    procs = []
    try:
        rs, client = start_redis(redis_port, procs)
        mock, mock_port = start([sys.executable, "-m", "mock_upstream", "--port", "0", "--speed", "0"], env)
        procs.append(mock)
        upstream = ["--upstream-url", "http://127.0.0.1:%d/v1" % mock_port, "--keys-file", keys]
        genv = dict(env, XAI_API_KEY="bench-upstream-key")
        roots = [("this checkout", ROOT)] + ([("baseline", args.baseline_root)] if args.baseline_root else [])
        print("%d replays past the end of one stored Responses stream of %d text deltas, one at a time"
              % (args.replays, args.chunks))
        for db, (label, root) in enumerate(roots):
            renv = dict(genv, TG_STREAM_STORE="redis", TG_REDIS_URL="redis://127.0.0.1:%d/%d" % (redis_port, db))
            m, m_port = start([sys.executable, "run.py", "--port", "0"] + upstream, genv, cwd=root)
            a, a_port = start([sys.executable, "run.py", "--port", "0"] + upstream, renv, cwd=root)
            b, b_port = start([sys.executable, "run.py", "--port", "0"] + upstream, renv, cwd=root)
            procs += [m, a, b]
            response_id, events = store_one(m_port, key, args.chunks)
            store_one(a_port, key, args.chunks)
            cpu, _ = replay_cpu(m, m_port, key, response_id, args.replays)
            print("  %-14s memory store (same process): gateway CPU %.2f ms per replay (%d stored events)"
                  % (label, 1000 * cpu, events))
            cpu, redis_cpu = replay_cpu(b, b_port, key, response_id, args.replays, rs)
            print("  %-14s redis store (another process): gateway CPU %.2f ms, redis-server %.2f ms per replay"
                  % (label, 1000 * cpu, 1000 * redis_cpu))
    finally:
        stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
