"""Soak: does the gateway's memory stay flat while it holds hundreds of streams for minutes?
Prints figures, asserts nothing.

    python bench/soak.py [--streams 300] [--minutes 3] [--prompt "chunks=40 delay=500 size=40"]
                         [--warmup 30] [--every 5]

Starts the mock upstream (real timing, speed 1) and a gateway on free loopback ports. --streams
clients each open a stream (by default 40 chunks 0.5 s apart: 20 s), read it to the end, check it
ended with [DONE], and open the next, until --minutes have passed (bounded: nothing new starts
after that, streams in flight are read to their end). Every --every seconds the gateway's VmRSS
(/proc/PID/status) is printed with the streams open and done so far; at the end, the least-squares
slope of RSS after --warmup seconds, in KiB per minute, and the counts of completed and failed
streams. The gateway's state (/debug/state) must be back to all zeros at the end.

RSS rises for the first tens of thousands of requests (allocator arenas, libcurl buffers, caches)
and then stays flat: the slope over the last third of the run is the steady-state figure.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import servers  # noqa: E402
from tests.mock_helpers import start_mock  # noqa: E402
from procstats import debug_state, rss_kib  # noqa: E402  (bench/, the script's own folder)



def slope(points: list) -> float:
    """Least-squares slope of (x, y) points (0 with fewer than two)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


class Counts:
    def __init__(self):
        self.open = self.done = self.failed = 0
        self.bytes = 0


async def one_stream(port: int, request: bytes, counts: Counts) -> None:
    counts.open += 1
    reader = writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        data = await asyncio.wait_for(reader.read(-1), timeout=600)
        counts.bytes += len(data)
        if data.startswith(b"HTTP/1.1 200") and b"data: [DONE]\n\n" in data and data.endswith(b"0\r\n\r\n"):
            counts.done += 1
        else:
            counts.failed += 1
    except (OSError, asyncio.TimeoutError):
        counts.failed += 1
    finally:
        counts.open -= 1
        if writer is not None:
            writer.close()


async def client(port: int, request: bytes, until: float, counts: Counts, delay: float) -> None:
    await asyncio.sleep(delay)  # spread the starts so the streams are not all in step
    while time.monotonic() < until:
        await one_stream(port, request, counts)


async def run(args, gateway, key: str) -> None:
    body = {"model": "bench-soak", "stream": True, "messages": [{"role": "user", "content": args.prompt}]}
    payload = json.dumps(body).encode()
    request = ("POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
               % (key, len(payload))).encode() + payload
    pid = gateway.proc.pid
    counts = Counts()
    start = time.monotonic()
    until = start + args.minutes * 60
    spread = min(10.0, args.warmup / 2)
    tasks = [asyncio.ensure_future(client(gateway.port, request, until, counts, spread * i / args.streams))
             for i in range(args.streams)]
    samples = []
    print("   t(s)  RSS (MiB)  open  done  failed")
    while not all(t.done() for t in tasks):
        t, rss = time.monotonic() - start, rss_kib(pid)
        samples.append((t, rss))
        print("%7.1f  %9.1f  %4d  %4d  %6d" % (t, rss / 1024, counts.open, counts.done, counts.failed), flush=True)
        await asyncio.wait(tasks, timeout=args.every)
    await asyncio.gather(*tasks)
    after = [(t / 60, rss) for t, rss in samples if args.warmup <= t <= args.minutes * 60]
    print("streams completed %d, failed %d, %.1f MB read" % (counts.done, counts.failed, counts.bytes / 1e6))
    if samples:
        print("RSS first %.1f MiB, peak %.1f MiB, last %.1f MiB" % (
            samples[0][1] / 1024, max(r for _, r in samples) / 1024, samples[-1][1] / 1024))
    print("RSS slope after %.0f s warm-up: %+.1f KiB/min over %d samples" % (args.warmup, slope(after), len(after)))
    last = after[len(after) * 2 // 3:]
    print("RSS slope over the last third: %+.1f KiB/min over %d samples" % (slope(last), len(last)))
    for _ in range(50):
        state = debug_state(gateway.url)
        if not any(state[k] for k in ("open_streams", "upstream_active", "inflight", "open_requests")):
            break
        await asyncio.sleep(0.1)
    print("gateway state at the end: %s" % json.dumps(state))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=300)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--prompt", default="chunks=40 delay=500 size=40")
    p.add_argument("--warmup", type=float, default=30.0)
    p.add_argument("--every", type=float, default=5.0)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mock = start_mock("--speed", "1")
    folder = tempfile.mkdtemp(prefix="soak-")
    gateway = servers.start_gateway(folder, mock.base, {
        "debug_endpoints": True, "access_log": False, "concurrent_requests": 0, "requests_per_minute": 0})
    try:
        key = servers.add_key(os.path.join(folder, "keys.json"), "soak")
        print("soak: %d streams of %r for %.1f min against gateway pid %d"
              % (args.streams, args.prompt, args.minutes, gateway.proc.pid))
        asyncio.run(run(args, gateway, key))
    finally:
        gateway.stop()
        mock.stop()


if __name__ == "__main__":
    main()
