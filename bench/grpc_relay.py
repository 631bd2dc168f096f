#!/usr/bin/env python3
"""What the gRPC relay costs, in one run: CPU per stream and per chunk of the gateway relaying xAI's
gRPC chat stream, against its HTTP (SSE) path with the same recording, and against calling the mock
directly; memory per open gRPC stream; N concurrent gRPC streams to their end, with errors counted.

Starts the mock (`python -m mock_upstream --speed 0`, gRPC on) and one gateway in front of it (HTTP
and gRPC), then runs the load tester (`run.py loadtest`, the same client for every path) three times
on the recorded story (20 content chunks, usage): HTTP through the gateway, gRPC through the gateway,
gRPC straight to the mock. The gateway's and the mock's CPU come from /proc (utime + stime) around
each run. Memory: N gRPC streams held open at once on the `stall` recording (three chunks, then
silence), the gateway's RSS before and with all N open. Figures are printed, never asserted.

    python3 bench/grpc_relay.py                  # 2,000 streams per path, 1,000 held open
    python3 bench/grpc_relay.py -n 500 --open 200
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.procstats import rss_kib, stop_all  # noqa: E402
from tests import servers  # noqa: E402
from tests.mock_helpers import start_mock  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def loadtest(*argv) -> dict:
    out = subprocess.run([sys.executable, "run.py", "loadtest", "--json", "--no-progress",
                          "--max-error-rate", "1", *argv], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if not out.stdout.strip():
        raise SystemExit("loadtest failed: %s" % out.stderr[-2000:])
    return json.loads(out.stdout)["runs"][0]["summary"]


def measure(label: str, pids: dict, argv: list) -> dict:
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    s = loadtest(*argv)
    cpu = {name: cpu_s(pid) - before[name] for name, pid in pids.items()}
    done = s["ends"].get("done", 0)
    row = {"path": label, "streams": done, "errors": s["errors"], "chunks": s["chunks"],
           "gateway_ms_per_stream": 1000 * cpu["gateway"] / max(1, done),
           "gateway_us_per_chunk": 1e6 * cpu["gateway"] / max(1, s["chunks"]),
           "mock_ms_per_stream": 1000 * cpu["mock"] / max(1, done),
           "ttft_p50_ms": s["ttft_ms"]["p50"], "e2e_p50_ms": (s.get("total_ms") or {}).get("p50")}
    return row


async def hold_open(address: str, key: str, n: int, pid: int) -> tuple:
    """n GetCompletionChunk calls on the stall recording, each until its first message; returns
    (RSS before KiB, RSS with all open KiB, errors)."""
    import grpc
    from tornado_grok.xai_proto import chat_pb2
    request = chat_pb2.GetCompletionsRequest(model="grok-4.20-non-reasoning", messages=[chat_pb2.Message(
        role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="hold [mock:stall]")])]).SerializeToString()
    before = rss_kib(pid)
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.unary_stream("/xai_api.Chat/GetCompletionChunk")
        calls = [method(request, metadata=(("authorization", "Bearer " + key),), timeout=600) for _ in range(n)]

        async def first(call):
            nonlocal errors
            try:
                await call.read()
            except grpc.aio.AioRpcError:
                errors += 1

        await asyncio.gather(*(first(c) for c in calls))
        during = rss_kib(pid)
        for call in calls:
            call.cancel()
    return before, during, errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="streams per path (default 2000)")
    p.add_argument("-c", type=int, default=50, help="concurrency of the CPU runs (default 50)")
    p.add_argument("--open", type=int, default=1000, help="gRPC streams held open at once (default 1000)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="grpc-bench-")
    mock = start_mock("--speed", "0")
    procs = [mock.proc]
    try:
        gateway = servers.start_gateway(work, mock.base, {
            "grpc_upstream": mock.grpc, "grpc_upstream_tls": False, "requests_per_minute": 0,
            "concurrent_requests": 0, "max_connections": 100000})
        procs.append(gateway.proc)
        key = servers.add_key(os.path.join(work, "keys.json"), "bench")
        pids = {"gateway": gateway.proc.pid, "mock": mock.proc.pid}
        common = ["-c", str(args.c), "-n", str(args.n), "--warmup", str(args.c), "--model", "grok-4.20-non-reasoning",
                  "--prompt", "tell a story [mock:story]"]
        rows = [
            measure("HTTP (SSE) via gateway", pids, ["--url", gateway.base, "--key", key, *common]),
            measure("gRPC via gateway", pids, ["--api", "grpc", "--url", "grpc://" + gateway.grpc, "--key", key, *common]),
            measure("gRPC direct to mock", pids, ["--api", "grpc", "--url", "grpc://" + mock.grpc, "--key", "xai-k",
                                                  *common]),
        ]
        print("%d streams per path, %d at once, the story recording (20 content chunks + finish + usage)"
              % (args.n, args.c))
        print("%-26s %8s %7s %8s %14s %13s %12s %9s" % ("path", "streams", "errors", "chunks", "gateway ms/str",
                                                        "gateway us/ch", "mock ms/str", "TTFT p50"))
        for r in rows:
            print("%-26s %8d %7d %8d %14.3f %13.1f %12.3f %9.2f" % (
                r["path"], r["streams"], r["errors"], r["chunks"], r["gateway_ms_per_stream"],
                r["gateway_us_per_chunk"], r["mock_ms_per_stream"], r["ttft_p50_ms"]))
        before, during, errors = asyncio.run(hold_open(gateway.grpc, key, args.open, gateway.proc.pid))
        print("%d gRPC streams open at once: %d errors; gateway RSS %.1f -> %.1f MiB, %.1f KiB per open stream"
              % (args.open, errors, before / 1024, during / 1024, (during - before) / max(1, args.open)))
        t0 = time.monotonic()
        s = loadtest("--api", "grpc", "--url", "grpc://" + gateway.grpc, "--key", key, "-c", str(args.open),
                     "-n", str(args.open), "--model", "grok-4.20-non-reasoning", "--prompt", "tell a story [mock:story]",
                     "--header", "x-mock-speed:1")
        print("%d concurrent gRPC streams at recorded pace (40 ms a chunk): %s, %d errors, TTFT p50 %.1f ms, "
              "p99 %.1f ms, chunk gap p99 %.1f ms (%.1f s)" % (
                  args.open, s["ends"], s["errors"], s["ttft_ms"]["p50"], s["ttft_ms"]["p99"], s["gap_ms"]["p99"],
                  time.monotonic() - t0))
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
