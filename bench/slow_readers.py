"""How much memory do slow clients cost the gateway? Prints figures, asserts nothing.

    python bench/slow_readers.py [--clients 200] [--rate 1024] [--seconds 30] [--chunks 20000]
                                 [--size 200] [--high-water-mark 65536]

Starts the mock upstream (speed 0: it writes as fast as it can) and a gateway on free loopback
ports, then opens --clients streams of the mock's synthetic generator (`chunks=N size=S`, about
N * (S + 100) bytes each) from clients that read --rate bytes per second (small receive buffers, so
the kernel does not read for them). Every second it samples the gateway's VmRSS (/proc/PID/status)
and, from /debug/state, how many streams have their upstream read paused. At the end it prints the
baseline and peak RSS, the bytes held per slow client ((peak - baseline) / clients), and what the
gateway would have had to hold without backpressure (everything the upstream sends).
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import servers  # noqa: E402
from tests.mock_helpers import start_mock  # noqa: E402
from procstats import debug_state, rss_kib  # noqa: E402  (bench/, the script's own folder)



def request_bytes(key: str, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    head = ("POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            % (key, len(payload)))
    return head.encode() + payload


async def slow_client(port: int, request: bytes, rate: int, until: float, totals: list, index: int) -> None:
    """Reads `rate` bytes per second in quarter-second sips until `until`, then hangs up."""
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, request)
        sip = max(1, rate // 4)
        while time.monotonic() < until:
            data = await asyncio.wait_for(loop.sock_recv(s, sip), timeout=max(0.01, until - time.monotonic()))
            if not data:
                break
            totals[index] += len(data)
            await asyncio.sleep(0.25)
    except (asyncio.TimeoutError, OSError):
        pass
    finally:
        s.close()


async def sample(pid: int, url: str, until: float, samples: list) -> None:
    while time.monotonic() < until:
        try:
            paused = debug_state(url).get("paused_streams")
        except OSError:
            paused = None
        samples.append((time.monotonic(), rss_kib(pid), paused))
        await asyncio.sleep(1.0)


async def run(args, gateway, key: str) -> dict:
    body = {"model": "bench-slow", "stream": True,
            "messages": [{"role": "user", "content": "chunks=%d size=%d" % (args.chunks, args.size)}]}
    request = request_bytes(key, body)
    pid = gateway.proc.pid
    baseline = rss_kib(pid)
    start = time.monotonic()
    until = start + args.seconds
    totals = [0] * args.clients
    samples: list = []
    clients = [slow_client(gateway.port, request, args.rate, until, totals, i) for i in range(args.clients)]
    await asyncio.gather(sample(pid, gateway.url, until, samples), *clients)
    return {"baseline": baseline, "samples": samples, "read": sum(totals), "start": start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rate", type=int, default=1024, help="bytes per second each client reads")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--chunks", type=int, default=20000)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--high-water-mark", type=int, default=64 * 1024)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mock = start_mock("--speed", "0")
    folder = tempfile.mkdtemp(prefix="slow_readers-")
    gateway = servers.start_gateway(folder, mock.base, {
        "debug_endpoints": True, "access_log": False, "high_water_mark": args.high_water_mark,
        "concurrent_requests": 0, "requests_per_minute": 0})
    try:
        key = servers.add_key(os.path.join(folder, "keys.json"), "slow")
        result = asyncio.run(run(args, gateway, key))
    finally:
        gateway.stop()
        mock.stop()
    baseline = result["baseline"]
    print("clients %d reading %d B/s for %.0f s; each stream ~%.1f MB from the upstream; high_water_mark %d"
          % (args.clients, args.rate, args.seconds, args.chunks * (args.size + 100) / 1e6, args.high_water_mark))
    print("  t(s)  gateway RSS (MiB)  paused streams")
    for t, rss, paused in result["samples"]:
        print("%6.1f  %17.1f  %14s" % (t - result["start"], rss / 1024, paused))
    peak = max(rss for _, rss, _ in result["samples"]) if result["samples"] else baseline
    held = (peak - baseline) * 1024 / max(1, args.clients)
    print("baseline RSS %.1f MiB, peak RSS %.1f MiB, held per slow client %.1f KiB"
          % (baseline / 1024, peak / 1024, held / 1024))
    print("clients read %.1f MB in all; without backpressure the gateway would buffer up to %.0f MB"
          % (result["read"] / 1e6, args.clients * args.chunks * (args.size + 100) / 1e6))


if __name__ == "__main__":
    main()
