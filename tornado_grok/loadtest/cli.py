"""`python run.py loadtest ...`: drive an OpenAI-compatible chat endpoint and report what a
streaming user feels. See USAGE.md."""
import argparse
import asyncio
import dataclasses
import ipaddress
import json
import os
import random
import signal
import sys
from urllib.parse import urlsplit

from ..progname import prog
from . import records as records_mod
from . import report, slo
from .client import APIS, Client, Target
from .grpc_client import DEFAULT_URL as GRPC_DEFAULT_URL, GrpcClient, GrpcTarget
from .selfcheck import merge_reports, raise_fd_limit
from .shapes import Shape, run_load
from .stats import Recorder
from .workload import Workload, parse_header, parse_rates

DEFAULT_URL = "http://127.0.0.1:8000/api/v1"
# 10 ms between chunks: real gaps on both mocks (their synthetic syntax), about 100 tokens/s.
DEFAULT_PROMPT = "chunks=20 delay=10 size=8"
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_DURATION = 10.0  # used when neither --requests nor --duration is given


def _prog() -> str:
    """How the user ran the load tester, for its usage line: grok-loadtest, `tornado-grok loadtest` or
    `run.py loadtest`."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return name if name == "grok-loadtest" else prog("loadtest")


def build_parser():
    p = argparse.ArgumentParser(
        prog=_prog(), description="Load-test an OpenAI-compatible chat completions (or Responses) endpoint.")
    p.add_argument("--url", default=None,
                   help="base URL; requests go to {url}/chat/completions, or {url}/responses with "
                        "--api responses (default %s); --api grpc: grpc://host:port (default %s)"
                        % (DEFAULT_URL, GRPC_DEFAULT_URL))
    p.add_argument("--api", choices=APIS, default="chat",
                   help="chat: chat completions (default); responses: the Responses API's typed events; "
                        "grpc: xAI's gRPC chat stream (GetCompletionChunk, xai-sdk's chat.stream())")
    p.add_argument("--key", help="Bearer key sent as Authorization")
    p.add_argument("--model", default="bench")
    p.add_argument("--prompt", default=DEFAULT_PROMPT,
                   help="last user message (both mocks read 'chunks=N delay=MS size=CHARS'; "
                        "default %(default)r)")
    p.add_argument("--no-stream", dest="stream", action="store_false",
                   help="ask for one JSON answer instead of SSE")
    w = p.add_argument_group("workload")
    w.add_argument("--dataset", metavar="FILE",
                   help="prompts: JSONL of {\"messages\": [...]}, {\"prompt\": ...} or ShareGPT "
                        "{\"conversations\": [...]} rows (or one JSON array), used in file order")
    w.add_argument("--max-tokens", metavar="DIST",
                   help="max_tokens of each request: N, uniform:LO:HI, normal:MEAN:SD, lognormal:MEAN:SD (seeded)")
    w.add_argument("--prompt-tokens", metavar="DIST",
                   help="pad each conversation's first user message with this many filler words (seeded)")
    w.add_argument("--turns", type=int, default=1, metavar="N",
                   help="conversations of N requests, each appending the previous answer (default 1)")
    w.add_argument("--header", action="append", default=[], metavar="K:V",
                   help="an extra request header (repeatable), e.g. X-Mock-Scenario:story")
    w.add_argument("--extra-body", metavar="JSON", help="a JSON object merged into every request body")
    w.add_argument("--expect-chunks", type=int, metavar="N",
                   help="a done answer with another number of content chunks is a content_mismatch error")
    c = p.add_argument_group("checks (exit status 1 when one fails)")
    c.add_argument("--slo", metavar="SPEC",
                   help="e.g. ttft_p99=500ms,tpot_p50=50ms (ttft, tpot, itl, e2e, chunk_gap; pNN, mean, max)")
    c.add_argument("--max-error-rate", type=float, default=DEFAULT_MAX_ERROR_RATE, metavar="F",
                   help="fail when more than this share of finished requests failed (default %(default)s)")
    c.add_argument("--rate-sweep", metavar="RATES",
                   help="open loop at each rate in turn (R1,R2,... or START:STOP:STEP) and report the "
                        "knee: the highest rate that meets the SLOs and --max-error-rate")
    g = p.add_argument_group("load shape (closed loop unless --rate)")
    g.add_argument("-c", "--concurrency", type=int, default=10, metavar="N",
                   help="closed loop: streams in flight (default %(default)s)")
    g.add_argument("--ramp-up", type=float, default=0.0, metavar="S",
                   help="closed loop: start the streams evenly over S seconds (default: all at once)")
    g.add_argument("--rate", type=float, metavar="R", help="open loop: new requests per second, Poisson")
    g.add_argument("--seed", type=int,
                   help="seeds the open loop's arrivals and every distribution (default: random, reported)")
    g.add_argument("--max-inflight", type=int, default=10000, metavar="N",
                   help="open loop: arrivals beyond this many open streams are dropped and counted")
    g.add_argument("-n", "--requests", type=int, metavar="N", help="stop issuing after N requests")
    g.add_argument("-d", "--duration", type=float, metavar="S",
                   help=f"stop issuing after S seconds (default {DEFAULT_DURATION:g} when no cap is given)")
    g.add_argument("--warmup", type=int, default=0, metavar="N", help="first run N unrecorded requests")
    g.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per-request limit, s (default %(default)s)")
    g.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="TCP (and TLS) connect limit, s (default %(default)s)")
    g.add_argument("--connect-limit", type=int, default=0, metavar="N",
                   help="at most N TCP handshakes in progress at once (default 0: no limit)")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    o.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    o.add_argument("--records", metavar="FILE",
                   help="also write one row per request, FILE.jsonl or FILE.csv")
    o.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="live progress on stderr (default: only when stderr is a TTY)")
    o.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--compare", metavar="URL",
                   help="then run the same load against this second base URL and compare")
    p.add_argument("--compare-key", help="Bearer key for --compare (default: --key)")
    p.add_argument("--rounds", type=int, default=1, metavar="K",
                   help="with --compare: alternate the targets in K rounds, each with 1/K of the "
                        "caps (default 1: all of one target, then all of the other)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow targets that are not loopback addresses")
    return p


def is_loopback(url):
    """True for http(s) URLs on 127.0.0.0/8, ::1 or localhost. Nothing is resolved."""
    return is_loopback_host(urlsplit(url).hostname or "")


def is_loopback_host(host):
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(args, parser):
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be >= 1")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be > 0")
    if args.ramp_up < 0:
        parser.error("--ramp-up must be >= 0")
    if args.connect_limit < 0:
        parser.error("--connect-limit must be >= 0")
    if args.timeout <= 0 or args.connect_timeout <= 0:
        parser.error("timeouts must be > 0")
    if args.rounds < 1 or (args.rounds > 1 and not args.compare):
        parser.error("--rounds needs --compare and must be >= 1")
    if args.requests is not None and args.requests < args.rounds:
        parser.error("--requests must be at least --rounds")
    if args.turns < 1:
        parser.error("--turns must be >= 1")
    if args.turns > 1 and args.api != "chat":
        parser.error("--turns needs --api chat")
    if not 0 <= args.max_error_rate <= 1:
        parser.error("--max-error-rate must be between 0 and 1")
    if args.expect_chunks is not None and args.expect_chunks < 0:
        parser.error("--expect-chunks must be >= 0")
    if args.records and not args.records.endswith((".jsonl", ".csv")):
        parser.error("--records FILE must end in .jsonl or .csv")
    try:
        args.headers = [parse_header(h) for h in args.header]
        if args.key and any(k.lower() == "authorization" for k, _ in args.headers):
            raise ValueError("--header Authorization and --key: give one of them")
        args.slos = slo.parse_slos(args.slo) if args.slo else []
        args.rates = parse_rates(args.rate_sweep) if args.rate_sweep else None
        if args.extra_body is not None:
            args.extra = json.loads(args.extra_body)
            if not isinstance(args.extra, dict):
                raise ValueError("--extra-body must be a JSON object")
        else:
            args.extra = None
        args.workload = Workload(args.prompt, args.dataset, args.max_tokens, args.prompt_tokens,
                                 args.turns, 0)  # checked here; each run gets its own, seeded
    except (ValueError, OSError) as e:
        parser.error(str(e))
    if args.rates and args.rate is not None:
        parser.error("--rate-sweep sets the rate: leave out --rate")
    if args.rates and args.rounds > 1:
        parser.error("--rate-sweep and --rounds do not combine")
    if args.requests is None and args.duration is None:
        args.duration = DEFAULT_DURATION
    if (args.rate is not None or args.rates or args.workload.varies) and args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)


def _config(args, shape):
    return {
        "url": args.url, "compare_url": args.compare, "api": args.api, "model": args.model,
        "prompt": args.prompt,
        "stream": args.stream,
        "shape": shape.describe() if not args.rates else
        f"open loop rate sweep, {', '.join(f'{r:g}' for r in args.rates)} req/s Poisson (seed {args.seed})",
        "mode": "open" if args.rate or args.rates else "closed",
        "concurrency": None if args.rate else args.concurrency, "rate": args.rate, "seed": args.seed,
        "max_inflight": shape.max_inflight if args.rate else None,
        "ramp_up_s": None if args.rate else args.ramp_up,
        "requests": args.requests, "duration_s": args.duration, "timeout_s": args.timeout,
        "warmup": args.warmup, "connect_limit": args.connect_limit, "rounds": args.rounds,
        "dataset": args.dataset, "max_tokens": args.max_tokens, "prompt_tokens": args.prompt_tokens,
        "turns": args.turns, "headers": [k for k, _ in args.headers],
        "extra_body": args.extra, "expect_chunks": args.expect_chunks,
        "slo": [t for *_, t in args.slos], "max_error_rate": args.max_error_rate,
        "rate_sweep": args.rates,
    }


def _round_shape(shape, k, rounds):
    """Round k of `rounds`: its share of the caps; open loop: its own seed (shared by both targets)."""
    if rounds == 1:
        return shape
    req = shape.requests
    if req is not None:
        req = req // rounds + (1 if k < req % rounds else 0)
    return dataclasses.replace(
        shape, requests=req, duration=None if shape.duration is None else shape.duration / rounds,
        seed=None if shape.seed is None else shape.seed + k)


def _steps(args, shape):
    """(rate or None, round k, shape) in order: the sweep's rates, or the rounds."""
    if args.rates:
        return [(r, 0, dataclasses.replace(shape, rate=r)) for r in args.rates]
    return [(None, k, _round_shape(shape, k, args.rounds)) for k in range(args.rounds)]


def _workload(args, k):
    """Each run's own Workload, seeded alike, so both targets get the same prompts and lengths."""
    return Workload(args.prompt, args.dataset, args.max_tokens, args.prompt_tokens, args.turns,
                    None if args.seed is None else args.seed + k, rows=args.workload.rows)


async def _run(args, shape, targets, progress):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_sigint():
        if stop.is_set():
            raise KeyboardInterrupt  # second Ctrl-C: give up at once
        print("\nloadtest: stopping; Ctrl-C again to abort", file=sys.stderr)
        stop.set()
    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError, ValueError):
        pass  # not the main thread: Ctrl-C then ends the run the hard way
    acc = {}  # (label, rate) -> [target, Recorder, self report, connections], merged over rounds
    clients = {}  # label -> the Client kept across rounds (its connections stay open, warm)
    steps = _steps(args, shape)
    try:
        for i, (rate, k, step_shape) in enumerate(steps):
            for label, target in targets:
                if stop.is_set():
                    break
                name = label if args.rounds == 1 else f"{label} {k + 1}/{args.rounds}"
                if rate is not None:
                    name = f"{label} @ {rate:g}/s"
                first = label not in clients
                if first:
                    clients[label] = (GrpcClient if args.api == "grpc" else Client)(
                        target, Recorder(), args.connect_limit)
                rec, me, conns = await run_load(
                    target, step_shape, progress=progress, stop=stop, label=name,
                    warmup=args.warmup if first else 0, client=clients[label],
                    workload=_workload(args, k), records=bool(args.records),
                    keep_open=i < len(steps) - 1)
                key = (label, rate)
                if key in acc:
                    a = acc[key]
                    a[1].merge(rec)
                    a[2] = merge_reports(a[2], me)
                    a[3] += conns
                else:
                    acc[key] = [target, rec, me, conns]
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        for c in clients.values():
            c.close()
    limits = slo.limits(args.slos) if args.slos else None
    out = []
    for (label, rate), a in acc.items():
        entry = report.run_entry(label, *a, limits=limits)
        entry["rate"] = rate
        if args.slos:
            entry["slo"] = slo.evaluate(a[1], args.slos)
        entry["failed"] = slo.verdict(entry["summary"], args.max_error_rate, entry.get("slo"))
        out.append((entry, a[1]))
    return out


def main(argv=None):
    """Entry point; returns the process exit code (2 for bad arguments or a refused target)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.url is None:
            args.url = GRPC_DEFAULT_URL if args.api == "grpc" else DEFAULT_URL
        _check(args, parser)
    except SystemExit as e:
        return e.code
    urls = [args.url] + ([args.compare] if args.compare else [])
    for url in urls:
        if not args.allow_remote and not is_loopback(url):
            print(f"loadtest: refusing {url}: not a loopback address (127.0.0.0/8, ::1, localhost);"
                  " pass --allow-remote to load-test it", file=sys.stderr)
            return 2
    try:
        common = dict(model=args.model, prompt=args.prompt, stream=args.stream, timeout=args.timeout,
                      connect_timeout=args.connect_timeout, api=args.api, headers=args.headers,
                      extra_body=args.extra, expect_chunks=args.expect_chunks,
                      keep_text=args.turns > 1)
        make = GrpcTarget if args.api == "grpc" else Target
        targets = [("target", make(args.url, args.key, **common))]
        if args.compare:
            targets.append(("compare", make(args.compare, args.compare_key or args.key, **common)))
    except ValueError as e:
        print(f"loadtest: {e}", file=sys.stderr)
        return 2
    for _, t in targets:  # a name like localhost must also resolve to loopback
        if not args.allow_remote and not is_loopback_host(t.address):
            print(f"loadtest: refusing {t.url}: {t.host} resolves to {t.address}, not a loopback "
                  "address; pass --allow-remote to load-test it", file=sys.stderr)
            return 2
    shape = Shape(concurrency=args.concurrency, rate=args.rate, seed=args.seed,
                  requests=args.requests, duration=args.duration, max_inflight=args.max_inflight,
                  ramp_up=args.ramp_up)
    need = (args.max_inflight if args.rate else args.concurrency) + 64
    soft = raise_fd_limit(need)
    if soft < need and args.rate:
        shape.max_inflight = max(1, soft - 64)
        print(f"loadtest: file descriptor limit {soft}: --max-inflight lowered to "
              f"{shape.max_inflight}", file=sys.stderr)
    elif soft < need:
        print(f"loadtest: warning: file descriptor limit {soft} is below the {need} this load "
              "may need; expect connect errors", file=sys.stderr)
    for path in (args.html, args.records):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            print(f"loadtest: cannot write {path}: no such directory", file=sys.stderr)
            return 2
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        runs = asyncio.run(_run(args, shape, targets, progress))
    except KeyboardInterrupt:
        print("loadtest: aborted", file=sys.stderr)
        return 130
    doc = report.document(_config(args, shape), [entry for entry, _ in runs])
    if args.records:
        records_mod.write(args.records, runs)
        print(f"loadtest: {sum(len(rec.rows) for _, rec in runs)} request records written to "
              f"{args.records}", file=sys.stderr)
    if args.html:
        from .html import render
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(render(doc, [rec for _, rec in runs]))
        print(f"loadtest: HTML report written to {args.html}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        sys.stdout.write(report.table(doc))
        sys.stdout.flush()
        if not sys.stdout.isatty():  # the table shows them; a redirected table still gets them here
            for w in doc["warnings"]:
                print(f"loadtest: warning: {w}", file=sys.stderr)
    sys.stdout.flush()
    failed = doc["failed"]
    for why in failed:
        print(f"loadtest: FAILED: {why}", file=sys.stderr)
    return 1 if failed else 0
