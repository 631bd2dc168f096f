#!/usr/bin/env python3
"""Many readers of one resumable stream on another process: what one key costs there.

Starts the bundled mock, a redis-server on a free port, and gateways A and B (stream_store =
"redis", one Redis). A key limited to one concurrent request starts one long resumable stream on A
(`chunks=N delay=D size=S` from the mock's generator) and hangs up; then `-n` clients resume it on B
at once, each reading to the end. Meanwhile another client times `GET /healthz` on B every 10 ms,
and CLIENT LIST is sampled for B's Redis connections. Printed: the resumes' statuses, the bytes
they got, B's CPU, the /healthz p50/p99 (and without readers, first), the most Redis connections
that ran an XREAD at once and the most connections Redis had.

    python3 bench/resume_readers.py                       # 300 readers, the default caps
    python3 bench/resume_readers.py --per-stream 1000 --per-key 1000   # no cap: the fan-out alone
    python3 bench/resume_readers.py --root DIR            # another checkout's gateway (before/after)

Figures are printed, never asserted.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procstats import start_redis, stop_all  # noqa: E402
from bench.resumable import free_port, percentile  # noqa: E402
from bench.responses_vs_chat import ROOT, cpu_seconds, start  # noqa: E402


def http(port: int, raw: bytes, until_end: bool = True) -> tuple:
    """One raw HTTP/1.1 exchange; (status, bytes received)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.sendall(raw)
        got = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            got += piece
            if not until_end and b"\r\n\r\n" in got:
                break
            if got.endswith(b"0\r\n\r\n") or (b"Content-Length" in got.split(b"\r\n\r\n")[0]
                                              and not got.startswith(b"HTTP/1.1 200")):
                break  # the end of a stream, or an error answer (the connection stays open)
    return int(got[9:12] or 0), len(got)


def healthz_times(port: int, stop: threading.Event, out: list) -> None:
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    while not stop.is_set():
        began = time.perf_counter()
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
            got += conn.recv(65536)
        out.append(time.perf_counter() - began)
        stop.wait(0.01)
    conn.close()


def redis_sample(client, stop: threading.Event, peak: dict) -> None:
    while not stop.is_set():
        clients = client.client_list()
        peak["xread"] = max(peak["xread"], sum(c.get("cmd") == "xread" for c in clients))
        peak["clients"] = max(peak["clients"], len(clients))
        stop.wait(0.05)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--readers", type=int, default=300)
    p.add_argument("--chunks", type=int, default=1500)
    p.add_argument("--delay", type=int, default=5, help="ms between chunks")
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--per-stream", type=int, help="resume_readers_per_stream (default: the gateway's)")
    p.add_argument("--per-key", type=int, help="resume_readers_per_key (default: the gateway's)")
    p.add_argument("--root", default=ROOT, help="the checkout whose gateway runs")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="resume-readers-bench-")
    keys = os.path.join(work, "keys.json")
    key = subprocess.run([sys.executable, "run.py", "keys", "add", "one", "--keys-file", keys, "--concurrency", "1",
                          "--rpm", "100000"], cwd=args.root, capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, TG_ACCESS_LOG="false", PYTHONUNBUFFERED="1")
    env.pop("XAI_API_KEY", None)
    redis_port = free_port()
    procs = []
    try:
        rs, client = start_redis(redis_port, procs, "--maxclients", "10000")
        mock, mock_port = start([sys.executable, "-m", "mock_upstream", "--port", "0", "--speed", "1"], env, args.root)
        procs.append(mock)
        genv = dict(env, XAI_API_KEY="bench-upstream-key", TG_FORWARD_MOCK_HEADERS="true", TG_STREAM_STORE="redis",
                    TG_REDIS_URL="redis://127.0.0.1:%d/0" % redis_port)
        if args.per_stream:
            genv["TG_RESUME_READERS_PER_STREAM"] = str(args.per_stream)
        if args.per_key:
            genv["TG_RESUME_READERS_PER_KEY"] = str(args.per_key)
        argv = [sys.executable, "run.py", "--port", "0", "--upstream-url", "http://127.0.0.1:%d/v1" % mock_port,
                "--keys-file", keys]
        a, a_port = start(argv, genv, args.root)
        procs.append(a)
        b, b_port = start(argv, genv, args.root)
        procs.append(b)

        idle: list = []
        stop = threading.Event()
        t = threading.Thread(target=healthz_times, args=(b_port, stop, idle))
        t.start()
        stop.wait(3)
        stop.set()
        t.join()

        prompt = "chunks=%d delay=%d size=%d" % (args.chunks, args.delay, args.size)
        body = json.dumps({"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()
        s = socket.create_connection(("127.0.0.1", a_port))
        s.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                  b"Content-Type: application/json\r\nX-Resumable: true\r\nContent-Length: %d\r\n\r\n%s"
                  % (key.encode(), len(body), body))
        raw = b""
        while raw.count(b"\n\n") < 3:
            raw += s.recv(65536)
        head = raw.split(b"\r\n\r\n")[0].decode("latin-1")
        url = [line.split(": ", 1)[1] for line in head.split("\r\n") if line.lower().startswith("x-resume-url:")][0]
        s.close()

        busy: list = []
        peak = {"xread": 0, "clients": 0}
        stop = threading.Event()
        watchers = [threading.Thread(target=healthz_times, args=(b_port, stop, busy)),
                    threading.Thread(target=redis_sample, args=(client, stop, peak))]
        for w in watchers:
            w.start()
        results: list = []
        request = ("GET %s HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0\r\n\r\n" % url).encode()
        cpu_before = cpu_seconds(b.pid)
        began = time.monotonic()
        readers = [threading.Thread(target=lambda: results.append(http(b_port, request))) for _ in range(args.readers)]
        for r in readers:
            r.start()
        for r in readers:
            r.join()
        elapsed = time.monotonic() - began
        cpu = cpu_seconds(b.pid) - cpu_before
        stop.set()
        for w in watchers:
            w.join()
        statuses = {}
        for status, _ in results:
            statuses[status] = statuses.get(status, 0) + 1
        sent = sum(n for status, n in results if status == 200)
        print("%d readers of one stream on another process (%s), %.1f s; root %s"
              % (args.readers, prompt, elapsed, args.root))
        print("  statuses: %s" % ", ".join("%d x %d" % (n, st) for st, n in sorted(statuses.items())))
        print("  bytes sent to readers: %.1f MiB; gateway B CPU %.2f s" % (sent / 2 ** 20, cpu))
        print("  another client's /healthz on B: idle p50 %.1f ms p99 %.1f ms; during p50 %.1f ms p99 %.1f ms (%d)"
              % (1000 * percentile(idle, 0.5), 1000 * percentile(idle, 0.99), 1000 * percentile(busy, 0.5),
                 1000 * percentile(busy, 0.99), len(busy)))
        print("  Redis: at most %d connections in XREAD at once, %d connections in all"
              % (peak["xread"], peak["clients"]))
    finally:
        stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
