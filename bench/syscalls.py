"""The syscalls per stream of the gateway (every feature on) and of the bare Tornado+pycurl relay,
counted by `strace -c` over the same run of S2's streams (64 concurrent, 20 chunks each).

    python3 bench/syscalls.py [-n 1000]

`sendto` counts the request each stream sends upstream (one) besides what goes to the client. Needs
strace and ../shared/bench (mock_sse.js, loadgen.js, tornado_min_proxy.py; Node.js). strace slows
the traced process, so only the counts mean something here, not the times. Loopback only; bounded.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.procstats import stop_all  # noqa: E402
from bench.suspects import SHARED, key_and_mock, loadgen, start  # noqa: E402

SCENARIO = "chunks=20 delay=0 size=8"
SHOWN = ("sendto", "recvfrom", "setsockopt", "epoll_ctl", "ioctl", "getpid")
_LINE = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def counted(pid: int, url: str, headers: dict, streams: int, scratch: str) -> dict:
    """Syscalls (name -> calls) of process `pid` and its threads while `streams` streams run."""
    loadgen(url, headers, pid, 64, 200, SCENARIO, True)  # the keep-alive connections open, warm
    summary = os.path.join(scratch, "strace-%d.txt" % pid)
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", summary],
                              stderr=subprocess.PIPE, text=True)
    try:
        for line in tracer.stderr:  # strace says so once it is attached
            if "attached" in line:
                break
        result = loadgen(url, headers, pid, 64, streams, SCENARIO, True)
    finally:
        tracer.send_signal(signal.SIGINT)  # strace -c writes its summary as it detaches
        tracer.wait(30)
    if result["ok"] != streams:
        raise SystemExit("%d of %d streams ok: the counts would not be per stream" % (result["ok"], streams))
    calls = {}
    with open(summary) as f:
        for line in f:
            m = _LINE.match(line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1))
    return calls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--streams", type=int, default=1000)
    args = p.parse_args()
    if subprocess.run(["which", "strace"], capture_output=True).returncode != 0:
        raise SystemExit("needs strace (apt-get install -y strace)")
    if not os.path.exists(os.path.join(SHARED, "loadgen.js")):
        raise SystemExit("needs ../shared/bench (mock_sse.js, loadgen.js) beside the checkout")
    scratch = tempfile.mkdtemp()
    keys, key, mock, mock_base = key_and_mock(scratch)
    per_stream = {}
    try:
        for variant in ("gateway", "relay"):
            proc, url, headers = start(variant, mock_base, keys, key, scratch)
            try:
                calls = counted(proc.pid, url, headers, args.streams, scratch)
            finally:
                stop_all([proc])
            per_stream[variant] = {name: n / args.streams for name, n in calls.items()}
    finally:
        stop_all([mock])
    print("syscalls per stream, %d streams of S2 (64 concurrent, 20 chunks), strace -c -f" % args.streams)
    print("| syscall | gateway | bare relay |\n|---|---|---|")
    for name in SHOWN + ("all",):
        row = [sum(c.values()) if name == "all" else c.get(name, 0.0) for c in (per_stream["gateway"], per_stream["relay"])]
        print("| %s | %.1f | %.1f |" % (name, row[0], row[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
