#!/usr/bin/env python3
"""Gateway CPU per stream: chat completions vs the Responses API, same length, one run.

Starts the bundled mock (`python -m mock_upstream --speed 0`, which speaks both APIs) and the
gateway on loopback, then streams through the gateway in alternating rounds: `-n` chat streams,
`-n` Responses streams, and again (`--rounds`), each asking the mock's synthetic generator for the
same `chunks=N size=S` (N text deltas of S characters; a Responses stream adds its few framing
events: created, in_progress, item and part added/done, completed). The gateway's CPU time (user +
system, from /proc/PID/stat) is read before and after each round; the script prints CPU per
stream for each API, bytes per stream, and the ratio Responses / chat. Figures are printed, never
asserted; alternating rounds keep a busy machine's drift out of the ratio.

    python3 bench/responses_vs_chat.py                      # 2 rounds of 200 streams of 200 chunks each
    python3 bench/responses_vs_chat.py -n 100 --chunks 1000 -c 16
    python3 bench/responses_vs_chat.py --baseline-root /tmp/old   # also chat through an older checkout

`--baseline-root DIR` starts a second gateway from another checkout of this project (e.g.
`git archive <commit> | tar -x -C DIR`) on the same mock and adds its chat rounds to the same
alternation, so a change's effect on the chat path is measured in the same run.
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.procstats import bench_key, drive, stop_all  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start(argv: list, env: dict, cwd: str = ROOT) -> tuple:
    """Starts a server that prints `listening on http://127.0.0.1:PORT`; returns (Popen, port)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = _LISTENING.search(line)
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining
            return proc, int(m.group(1))
    raise SystemExit("%s did not start" % " ".join(argv))


def one_stream(conn: http.client.HTTPConnection, path: str, body: bytes, key: str) -> int:
    conn.request("POST", path, body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError("HTTP %d: %r" % (response.status, data[:200]))
    return len(data)


def run_round(port: int, key: str, api: str, streams: int, concurrency: int, prompt: str) -> tuple:
    """`streams` streams of one API, `concurrency` at a time; returns (total bytes, errors)."""
    if api == "chat":
        path = "/api/v1/chat/completions"
        body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    else:
        path = "/api/v1/responses"
        body = {"model": "bench", "stream": True, "input": prompt}
    payload = json.dumps(body).encode()
    return drive(port, lambda conn: one_stream(conn, path, payload, key), streams, concurrency)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--streams", type=int, default=200, help="streams per API per round")
    p.add_argument("--chunks", type=int, default=200, help="text deltas per stream")
    p.add_argument("--size", type=int, default=8, help="characters per delta")
    p.add_argument("--delay", type=int, default=0, help="ms between deltas (0: as fast as the mock writes)")
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2, help="chat+responses rounds, alternating")
    p.add_argument("--baseline-root", help="another checkout whose gateway's chat path is measured too")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="resp-vs-chat-")
    key, env = bench_key(ROOT, work)
    keys = os.path.join(work, "keys.json")
    procs = []
    try:
        mock, mock_port = start([sys.executable, "-m", "mock_upstream", "--port", "0", "--speed", "0"], env)
        procs.append(mock)
        gateway, port = start([sys.executable, "run.py", "--port", "0", "--upstream-url",
                               "http://127.0.0.1:%d/v1" % mock_port, "--keys-file", keys],
                              dict(env, XAI_API_KEY="bench-upstream-key"))
        procs.append(gateway)
        runs = [("chat", "chat", gateway, port), ("responses", "responses", gateway, port)]
        if args.baseline_root:
            old, old_port = start([sys.executable, "run.py", "--port", "0", "--upstream-url",
                                   "http://127.0.0.1:%d/v1" % mock_port, "--keys-file", keys],
                                  dict(env, XAI_API_KEY="bench-upstream-key"), cwd=args.baseline_root)
            procs.append(old)
            runs.insert(1, ("chat@baseline", "chat", old, old_port))
        prompt = "chunks=%d delay=%d size=%d" % (args.chunks, args.delay, args.size)
        for _, api, _, gw_port in runs:
            run_round(gw_port, key, api, 20, 4, prompt)  # warm-up: connections, caches
        cpu = {label: 0.0 for label, *_ in runs}
        size = {label: 0 for label, *_ in runs}
        errors = {label: 0 for label, *_ in runs}
        started = time.monotonic()
        for _ in range(args.rounds):
            for label, api, proc, gw_port in runs:
                before = cpu_seconds(proc.pid)
                nbytes, nerr = run_round(gw_port, key, api, args.streams, args.concurrency, prompt)
                cpu[label] += cpu_seconds(proc.pid) - before
                size[label] += nbytes
                errors[label] += nerr
        total = args.streams * args.rounds
        print("%d streams per API (%d rounds of %d, %d at a time), %d deltas of %d chars %d ms apart, %.0f s"
              % (total, args.rounds, args.streams, args.concurrency, args.chunks, args.size, args.delay,
                 time.monotonic() - started))
        for label, *_ in runs:
            kib = size[label] / total / 1024
            print("  %-13s gateway CPU %.3f ms/stream, %.1f KiB/stream (%.1f us/KiB), errors %d"
                  % (label, 1000 * cpu[label] / total, kib, 1e6 * cpu[label] / total / max(kib, 1e-9),
                     errors[label]))
        if cpu["chat"] > 0:
            print("  ratio responses/chat: CPU per stream %.2f (bytes per stream %.2f, CPU per KiB %.2f)"
                  % (cpu["responses"] / cpu["chat"], size["responses"] / max(1, size["chat"]),
                     (cpu["responses"] / max(1, size["responses"])) / (cpu["chat"] / max(1, size["chat"]))))
        if "chat@baseline" in cpu and cpu["chat@baseline"] > 0:
            print("  ratio chat/chat@baseline: CPU per stream %.2f" % (cpu["chat"] / cpu["chat@baseline"]))
    finally:
        stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
