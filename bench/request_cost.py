"""The gateway's CPU per request on the request path with one upstream, this checkout against
another one (before/after), whole answers and streams, alternated rounds against one mock at speed 0.

    git archive <commit> | tar -x -C /tmp/before
    python3 bench/request_cost.py --before /tmp/before [--rounds 3] [-n 2400]

CPU is the gateway process's own (utime + stime from /proc), per request, over n requests from 8
client threads with keep-alive; the machine's noise moves wall times, much less this. Loopback only.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests import servers  # noqa: E402
from tests.mock_helpers import start_mock  # noqa: E402

def cpu(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

def run(root, mock, n, stream):
    tmp = tempfile.mkdtemp()
    keys = os.path.join(tmp, "keys.json")
    out = subprocess.run([sys.executable, "run.py", "keys", "add", "b", "--keys-file", keys, "--rpm", "100000000", "--concurrency", "1000000"], cwd=root, capture_output=True, text=True, check=True)
    key = out.stdout.strip()
    cfg = servers.write_config(os.path.join(tmp, "g.toml"), {"access_log": True})
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
    env["XAI_API_KEY"] = "bench-upstream-key"
    g = servers.Gateway([sys.executable, "run.py", "--port", "0", "--config", cfg, "--keys-file", keys, "--upstream-url", mock.base], env)
    body = {"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    h = {"Authorization": "Bearer " + key}

    def worker(count):
        s = requests.Session()
        for _ in range(count):
            r = s.post(g.base + "/chat/completions", json=body, headers=h)
            assert r.status_code == 200
    try:
        worker(200)
        c0 = cpu(g.proc.pid)
        ts = [threading.Thread(target=worker, args=(n // 8,)) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        c1 = cpu(g.proc.pid)
        return 1e6 * (c1 - c0) / (n // 8 * 8)
    finally:
        g.stop()

def main() -> None:
    p = argparse.ArgumentParser(description="gateway CPU per request, before/after")
    p.add_argument("--before", required=True, help="another checkout (the 'before')")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("-n", type=int, default=2400, help="requests per measurement")
    args = p.parse_args()
    mock = start_mock("--speed", "0")
    res = {}
    try:
        for rnd in range(args.rounds):
            for which, root in (("before", args.before), ("after", ROOT)):
                for stream in (False, True):
                    v = run(root, mock, args.n, stream)
                    res.setdefault((which, stream), []).append(v)
                    print(rnd, which, "stream" if stream else "whole", "%.0f us CPU/request" % v, flush=True)
    finally:
        mock.stop()
    for (which, stream), v in sorted(res.items()):
        print("%-6s %-6s median %.0f us CPU/request  (%s)" % (which, "stream" if stream else "whole",
              sorted(v)[len(v) // 2], ", ".join("%.0f" % x for x in v)))


if __name__ == "__main__":
    main()
