#!/usr/bin/env python3
"""The cost of resumable streams: gateway CPU per stream, plain vs resumable (memory, Redis), one run.

Starts the bundled mock (`--speed 0`), a redis-server on a free port, gateway M (stream_store =
"memory"), and gateways R and R2 (stream_store = "redis", one Redis). Then, in alternating rounds of
`-n` streams each (`chunks=N size=S` from the mock's generator, `-c` at a time): plain streams
through M, `X-Resumable: true` streams through M, and `X-Resumable: true` streams through R. The
gateway CPU (user + system, /proc/PID/stat) per round gives CPU per stream for each; for Redis, the
redis-server's own CPU is printed too. Then:

- Redis memory per resumable stream: MEMORY USAGE of each stream's keys (events and meta), averaged
  over the streams the Redis rounds left there (they are kept for resume_retention);
- time from reconnect to the first resumed event: `--resumes` streams (delay 5 ms between chunks)
  are each read for a few events, dropped, and resumed with Last-Event-ID (memory: on M; Redis: on R2,
  another process); p50 and p99 of the time from sending the GET to the first event's bytes.

Figures are printed, never asserted.

    python3 bench/resumable.py                  # S3-like: 2 rounds of 200 streams of 200 chunks, 64 at a time
    python3 bench/resumable.py --chunks 20      # S2-like
    python3 bench/resumable.py -n 100 --chunks 400 -c 16 --resumes 200
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procstats import bench_key, drive, free_port, start_redis, stop_all  # noqa: E402
from bench.responses_vs_chat import ROOT, cpu_seconds, start  # noqa: E402



def run_round(port, key, streams, concurrency, prompt, resumable: bool) -> tuple:
    body = json.dumps({"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    if resumable:
        headers["X-Resumable"] = "true"

    def one(conn) -> int:
        conn.request("POST", "/api/v1/chat/completions", body, headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(response.status)
        return len(data)

    return drive(port, one, streams, concurrency)


def resume_latency(start_port, resume_port, key, prompt) -> float:
    """One stream: read 3 events, drop (RST), resume elsewhere; seconds from GET to first event bytes."""
    body = json.dumps({"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()
    sock = socket.create_connection(("127.0.0.1", start_port))
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Type: application/json\r\nX-Resumable: true\r\nContent-Length: %d\r\n\r\n%s"
                 % (key.encode(), len(body), body))
    raw = b""
    while raw.count(b"\n\n") < 3:
        raw += sock.recv(65536)
    head = raw.split(b"\r\n\r\n")[0].decode("latin-1")
    url = [line.split(": ", 1)[1] for line in head.split("\r\n") if line.lower().startswith("x-resume-url:")][0]
    ids = [int(line[4:]) for line in raw.split(b"\n") if line.startswith(b"id: ")]
    last = ids[-2]  # the last one surely complete
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    again = socket.create_connection(("127.0.0.1", resume_port))
    began = time.perf_counter()
    again.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nLast-Event-ID: %d\r\n\r\n" % (url, last)).encode())
    got = b""
    while b"id: " not in got:
        piece = again.recv(65536)
        if not piece:
            break
        got += piece
    elapsed = time.perf_counter() - began
    again.close()
    return elapsed


def percentile(values, q) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--streams", type=int, default=200)
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--delay", type=int, default=0, help="ms between chunks (0: as fast as the mock writes)")
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--resumes", type=int, default=100, help="streams dropped and resumed per backend")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="resumable-bench-")
    key, env = bench_key(ROOT, work)
    keys = os.path.join(work, "keys.json")
    redis_port = free_port()
    procs = []
    try:
        rs, client = start_redis(redis_port, procs)
        mock, mock_port = start([sys.executable, "-m", "mock_upstream", "--port", "0", "--speed", "0"], env)
        procs.append(mock)
        upstream = ["--upstream-url", "http://127.0.0.1:%d/v1" % mock_port, "--keys-file", keys]
        genv = dict(env, XAI_API_KEY="bench-upstream-key", TG_FORWARD_MOCK_HEADERS="true")
        m, m_port = start([sys.executable, "run.py", "--port", "0"] + upstream, genv)
        procs.append(m)
        renv = dict(genv, TG_STREAM_STORE="redis", TG_REDIS_URL="redis://127.0.0.1:%d/0" % redis_port)
        r, r_port = start([sys.executable, "run.py", "--port", "0"] + upstream, renv)
        procs.append(r)
        r2, r2_port = start([sys.executable, "run.py", "--port", "0"] + upstream, renv)
        procs.append(r2)
        prompt = "chunks=%d delay=%d size=%d" % (args.chunks, args.delay, args.size)
        runs = [("plain", m, m_port, False), ("resumable memory", m, m_port, True),
                ("resumable redis", r, r_port, True)]
        for _, _, port, resumable in runs:
            run_round(port, key, 20, 4, prompt, resumable)  # warm-up
        client.flushall()
        cpu = {label: 0.0 for label, *_ in runs}
        size = {label: 0 for label, *_ in runs}
        errors = {label: 0 for label, *_ in runs}
        redis_cpu = 0.0
        started = time.monotonic()
        for _ in range(args.rounds):
            for label, proc, port, resumable in runs:
                before, rbefore = cpu_seconds(proc.pid), cpu_seconds(rs.pid)
                nbytes, nerr = run_round(port, key, args.streams, args.concurrency, prompt, resumable)
                cpu[label] += cpu_seconds(proc.pid) - before
                if label == "resumable redis":
                    redis_cpu += cpu_seconds(rs.pid) - rbefore
                size[label] += nbytes
                errors[label] += nerr
        total = args.streams * args.rounds
        print("%d streams each (%d rounds of %d, %d at a time), %d chunks of %d chars %d ms apart, %.0f s"
              % (total, args.rounds, args.streams, args.concurrency, args.chunks, args.size, args.delay,
                 time.monotonic() - started))
        for label, *_ in runs:
            print("  %-17s gateway CPU %.3f ms/stream, %.1f KiB/stream, errors %d, ratio to plain %.2f"
                  % (label, 1000 * cpu[label] / total, size[label] / total / 1024, errors[label],
                     cpu[label] / max(cpu["plain"], 1e-9)))
        print("  redis-server CPU during the Redis rounds: %.3f ms/stream" % (1000 * redis_cpu / total))
        # Redis memory per stream: the keys the Redis rounds left (kept for resume_retention).
        per_stream, streams = 0, set()
        for name in client.scan_iter("tg:rs:*", count=1000):
            streams.add(name.rsplit(b":", 1)[0])
            per_stream += client.memory_usage(name) or 0
        if streams:
            print("  Redis memory per resumable stream: %.1f KiB (%d streams, events of %.1f KiB each)"
                  % (per_stream / len(streams) / 1024, len(streams), size["resumable redis"] / total / 1024))
        slow = "chunks=%d delay=5 size=%d" % (args.chunks, args.size)
        for label, first, then in (("memory, same process", m_port, m_port),
                                   ("redis, another process", r_port, r2_port)):
            times = [resume_latency(first, then, key, slow) for _ in range(args.resumes)]
            print("  reconnect -> first resumed event (%s): p50 %.2f ms, p99 %.2f ms (%d resumes)"
                  % (label, 1000 * percentile(times, 0.5), 1000 * percentile(times, 0.99), len(times)))
    finally:
        stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
