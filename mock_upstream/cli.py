"""Command line: `python -m mock_upstream [--host H] [--port P] [--speed F] ...` (see --help)."""

import argparse
import asyncio
import ipaddress
import os
import signal
import sys

from mock_upstream.app import start
from mock_upstream.recordings import RecordingError
from mock_upstream.scenarios import BUILTIN_SCENARIOS, ScenarioError


def default_prog(module: str) -> str:
    """The console script's name when run as one (grok-mock), else `python -m MODULE`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name and not name.endswith(".py") and name not in ("-c", "-m") else f"python -m {module}"


def parse_args(argv=None, prog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog or default_prog("mock_upstream"), description="Mock xAI upstream: recordings, faults, journal.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only unless --allow-remote)")
    p.add_argument("--port", type=int, default=8600, help="port (0 = any free port; the line printed says which)")
    p.add_argument("--grpc-port", type=int, default=None, metavar="P",
                   help="port of xAI's gRPC API (default: --port + 1, or any free port with --port 0; -1: off)")
    p.add_argument("--speed", type=float, default=1.0, help="delay multiplier: 1 real timing, 0 no delays")
    p.add_argument("--require-key", default=os.environ.get("MOCK_REQUIRE_KEY"), help="accept only this Bearer key (env MOCK_REQUIRE_KEY)")
    p.add_argument("--recordings", action="append", default=[], metavar="DIR", help="extra recordings directory (repeatable)")
    p.add_argument("--scenarios", default=BUILTIN_SCENARIOS, metavar="FILE", help="scenarios and rules (TOML)")
    p.add_argument("--journal-size", type=int, default=10000, metavar="N", help="journal entries kept (the most recent)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    args = p.parse_args(argv)
    if args.speed < 0:
        p.error("--speed must not be negative")
    if args.journal_size < 1:
        p.error("--journal-size must be at least 1")
    if not args.allow_remote and not is_loopback(args.host):
        p.error(f"refusing to listen on non-loopback {args.host!r} without --allow-remote")
    return args


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(args: argparse.Namespace) -> None:
    options = dict(speed=args.speed, require_key=args.require_key, recordings_dirs=args.recordings,
                   scenarios_file=args.scenarios, journal_limit=args.journal_size)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # before the line below: tests signal right after it
    server, port = start(args.port, args.host, **options)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mock_upstream listening on http://{shown}:{port}", flush=True)
    grpc_server = None
    grpc_port = args.grpc_port if args.grpc_port is not None else (args.port + 1 if args.port else 0)
    if grpc_port >= 0:
        from mock_upstream import grpc_service
        grpc_server, bound = await grpc_service.start(server.request_callback.settings["mock"], grpc_port, args.host)
        print(f"mock_upstream gRPC listening on {shown}:{bound}", flush=True)
    await stop.wait()
    server.stop()
    if grpc_server is not None:
        await grpc_server.stop(1.0)
    # Close open streams (a stall would otherwise last 600 s) so no handler is cancelled mid-write.
    await asyncio.wait_for(server.close_all_connections(), 5)


def main(argv=None, prog: str | None = None) -> None:
    """`python -m mock_upstream`, `run.py mock` and the `grok-mock` console script (`prog` names which)."""
    args = parse_args(argv, prog)
    try:
        asyncio.run(serve(args))
    except (RecordingError, ScenarioError, OSError) as e:
        print(f"mock_upstream: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)
