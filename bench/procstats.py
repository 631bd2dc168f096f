"""What the bench scripts share: a gateway's RSS and /debug/state, a pool of keep-alive clients that
drives streams through it, free loopback ports and waiting for a listener, and stopping the
processes a script started."""

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def rss_kib(pid: int) -> int:
    """VmRSS of one process, in KiB (0 once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def debug_state(url: str) -> dict:
    """GET /debug/state (the gateway runs with debug_endpoints = true)."""
    with _NO_PROXY.open(url + "/debug/state", timeout=5) as r:
        return json.loads(r.read())


def drive(port: int, one, streams: int, concurrency: int) -> tuple:
    """Makes `streams` calls of one(conn) -> bytes read, over `concurrency` keep-alive connections to
    127.0.0.1:port (a failed call reconnects and counts as an error); returns (bytes, errors)."""
    jobs = queue.Queue()
    for _ in range(streams):
        jobs.put(1)
    totals = {"bytes": 0, "errors": 0}
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            try:
                jobs.get_nowait()
            except queue.Empty:
                break
            try:
                n = one(conn)
                with lock:
                    totals["bytes"] += n
            except Exception:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    totals["errors"] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return totals["bytes"], totals["errors"]


def free_port() -> int:
    """A loopback port free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc=None, timeout: float = 30.0) -> None:
    """Returns once something listens on 127.0.0.1:port; exits the script if `proc` (the process
    meant to listen) ends first, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("a server exited at start (code %s)" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on port %d after %ss" % (port, timeout))


def stop_all(procs: list) -> None:
    """SIGTERM to each process (the last started first), then wait for each; SIGKILL after 30 s."""
    for proc in reversed(procs):
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_key(root: str, work: str) -> tuple:
    """(a client key with limits no bench reaches, stored in work/keys.json; the environment for a
    gateway started from `root` with no access log and no real upstream key): what the CPU bench
    scripts set up."""
    keys = os.path.join(work, "keys.json")
    key = subprocess.run([sys.executable, "run.py", "keys", "add", "bench", "--keys-file", keys,
                          "--rpm", "100000000", "--concurrency", "1000000"], cwd=root,
                         capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, TG_ACCESS_LOG="false", PYTHONUNBUFFERED="1")
    env.pop("XAI_API_KEY", None)
    return key, env


def start_redis(port: int, procs: list, *options: str):
    """A redis-server on 127.0.0.1:port with no persistence (and `options`, e.g. "--maxclients",
    "10000"), added to procs (stop_all ends it): (its process, a redis-py client), once it answers a
    PING (10 s at most)."""
    import time

    import redis
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--loglevel", "warning", *options], stdout=subprocess.DEVNULL)
    procs.append(proc)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc, client
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # waiting for redis-server to listen
