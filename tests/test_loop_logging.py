"""A stderr pipe that nobody reads must not stop the gateway: its log lines wait in a bounded queue,
the rest are dropped and counted, and what is queued is written out at a clean shutdown."""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests import servers

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), missing from older Pythons' fcntl
BATCH = 500
_DROPPED = re.compile(r"^(\d+) log lines dropped", re.M)


class BlockedStderrGateway:
    """A gateway whose stderr is a pipe the test reads only when it chooses to (read_stderr)."""

    def __init__(self, folder: str, upstream: str, settings: dict):
        os.makedirs(folder)
        config = servers.write_config(os.path.join(folder, "gateway.toml"), settings)
        keys = os.path.join(folder, "keys.json")
        self.key = servers.add_key(keys, "logging")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
        env.update(XAI_API_KEY=servers.UPSTREAM_KEY, PYTHONUNBUFFERED="1")
        self.err_r, err_w = os.pipe()
        fcntl.fcntl(err_w, F_SETPIPE_SZ, 4096)  # the smallest pipe: it is full after ~15 lines
        self.proc = subprocess.Popen(
            [sys.executable, "run.py", "--port", "0", "--config", config, "--keys-file", keys,
             "--upstream-url", upstream], cwd=servers.ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=err_w, text=True, preexec_fn=servers._die_with_parent)
        os.close(err_w)
        self.stdout = []
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.stdout.append(line)
                m = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line)
                if m:
                    self.url, self.port = m.group(1), int(m.group(2))
                    ready.set()
            ready.set()
        threading.Thread(target=pump, daemon=True).start()
        assert ready.wait(20) and self.proc.poll() is None, "".join(self.stdout)
        self.text = b""
        self._reader = None

    def read_stderr(self) -> None:
        """From now on, read the pipe (in a thread) into .text."""
        def read():
            while True:
                data = os.read(self.err_r, 65536)
                if not data:
                    return
                self.text += data
        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._reader is None:
            os.close(self.err_r)


@pytest.fixture
def blocked(mock, tmp_path):
    started = []

    def start(**settings):
        g = BlockedStderrGateway(os.path.join(str(tmp_path), uuid.uuid4().hex[:8]), mock.base,
                                 dict({"debug_endpoints": True}, **settings))
        started.append(g)
        return g
    yield start
    for g in started:
        g.stop()


def dropped_metric(g) -> int:
    text = requests.get(g.url + "/metrics", timeout=10).text
    return int(float(re.search(r"^tornado_grok_log_lines_dropped_total (\S+)$", text, re.M).group(1)))


def unauthorized(g, count: int) -> None:
    """`count` requests that each write an access-log line (401: no key), pipelined on one connection."""
    request = hh.raw_request("GET", "/api/v1/models", {})
    with hh.connect(g, timeout=20) as sock:  # a gateway stuck on its log would time this out
        sock.sendall(request * count)
        got = b""
        while got.count(b"HTTP/1.1 401 ") < count:
            piece = sock.recv(1 << 20)
            assert piece, got[-300:]
            got += piece


def test_a_stderr_nobody_reads_does_not_stop_the_gateway(blocked):
    g = blocked(log_queue_bytes=65536)
    for _ in range(10):  # 5,000 logged requests, /healthz answered between every 500
        unauthorized(g, BATCH)
        r = requests.get(g.url + "/healthz", timeout=10)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
    # Requests that go upstream are still served, streams included.
    r = requests.post(g.url + "/api/v1/chat/completions", timeout=10, headers=hh.auth(g.key),
                      json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.content.endswith(b"data: [DONE]\n\n")
    dropped_so_far = dropped_metric(g)
    assert dropped_so_far > 0
    g.read_stderr()  # the reader is back: the queued lines, then the count of the dropped ones

    def reported() -> int:
        return sum(int(n) for n in _DROPPED.findall(g.text.decode()))
    # The last lines may reach the writer's queue after the scrape above (the access log hands its
    # lines over every 50 ms), and be dropped then: every line is written or reported in the end.
    servers.wait_until(lambda: len(access(g)) + reported() >= 10 * BATCH + 1, timeout=10)
    lines = g.text.decode().splitlines()
    assert all(line.startswith("{") or _DROPPED.match(line) for line in lines), lines  # whole lines only
    assert len(access(g)) + reported() == 10 * BATCH + 1  # each line written or counted, never both
    assert reported() >= dropped_so_far
    assert dropped_metric(g) == reported()  # the metric and the log's own count agree
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(15) == 0


def test_queued_lines_are_written_at_a_clean_shutdown(blocked):
    g = blocked()  # the default queue holds them all
    unauthorized(g, 300)  # ~75 KB of lines: far more than the pipe holds
    assert requests.get(g.url + "/healthz", timeout=10).status_code == 200
    g.proc.send_signal(signal.SIGTERM)
    g.read_stderr()
    assert g.proc.wait(15) == 0
    g._reader.join(10)
    lines = access(g)
    assert len(lines) == 300 and {line["status"] for line in lines} == {401}
    assert not _DROPPED.search(g.text.decode())
    assert "tornado_grok stopped" in "".join(g.stdout)


def access(g) -> list:
    return [json.loads(line) for line in g.text.decode(errors="replace").splitlines()
            if line.startswith("{") and line.endswith("}")]
