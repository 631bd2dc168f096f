"""Run the mock upstream as a real subprocess for tests; plain functions, no pytest magic.

    from tests.mock_helpers import start_mock, mock_headers

    with start_mock("--speed", "0") as mock:        # or: mock = start_mock(); ...; mock.stop()
        client = OpenAI(api_key="k", base_url=mock.base)
        mock.set_fault("t1", {"disconnect_after": 3}, times=1)   # the next request tagged t1 only
        requests.post(mock.base + "/chat/completions", json=body,
                      headers={"Authorization": "Bearer k", **mock_headers("story", test_id="t1")})
        entry = mock.wait_ended(timeout=5, test_id="t1")   # the mock saw that request end
        assert entry["ended"] == "fault"   # "complete" | "client_closed" | "fault"

Raw-socket helpers: raw_post(path, body, headers) builds request bytes, raw_exchange(url, bytes)
reads until the server closes, dechunk(raw) -> (head, body, complete) tells a dropped chunked body.
start_recorder(upstream, out, directory) runs the recording proxy the same way.

MockProcess: .url (http://127.0.0.1:PORT), .base (.../v1), .port, .journal(test_id=None),
.clear_journal(), .wait_entry(seq=None, timeout=5, ended=False, test_id=None),
.wait_ended(seq=None, timeout=5, test_id=None), .set_fault(test_id, fault, times=None),
.clear_faults(test_id=None), .scenarios(), .stop(). Without `seq` the wait is for the latest
entry (of `test_id` when given). The mock is started with `--port 0`; the port comes from the one
line it prints, never from a fixed number, and nothing here sleeps to synchronise.
"""

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.parse

from mock_upstream.testing import MockAdmin, MockServerError  # noqa: E402  (the one admin client)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY_PREFIX = "mock_upstream listening on "


def mock_headers(scenario=None, test_id=None, speed=None) -> dict:
    """The X-Mock-* headers that pick a scenario, tag a test, or change the speed of one request."""
    headers = {}
    if scenario is not None:
        headers["X-Mock-Scenario"] = scenario
    if test_id is not None:
        headers["X-Mock-Test-Id"] = test_id
    if speed is not None:
        headers["X-Mock-Speed"] = str(speed)
    return headers


class MockError(MockServerError):
    """The mock did not start, or an admin call failed."""


class MockProcess(MockAdmin):
    """A running `python -m mock_upstream`; also a context manager that stops it on exit."""

    error_class = MockError

    def __init__(self, proc: subprocess.Popen, url: str, stderr_file):
        self.proc = proc
        self.url = url
        self.base = url + "/v1"
        self.port = int(url.rsplit(":", 1)[1])
        self._stderr = stderr_file

    # -- lifetime ------------------------------------------------------------------------------

    def stderr(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stop(self) -> int:
        """Terminate (SIGTERM, then SIGKILL after 5 s); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_mock(*args, env=None, timeout: float = 15.0) -> MockProcess:
    """Start `python -m mock_upstream --port 0 *args` and wait for its listening lines; `.grpc` is
    the 127.0.0.1:PORT of its gRPC services (None with `--grpc-port -1`).

    The mock is terminated if the thread that started it dies: call this from the main thread."""
    mock = _start(["mock_upstream", "--port", "0", *args], READY_PREFIX, env, timeout)
    mock.grpc = None
    if "--grpc-port" not in args or args[args.index("--grpc-port") + 1] != "-1":
        line = _read_line(mock.proc, timeout)
        mock.grpc = line.rsplit(" ", 1)[1].strip()
    return mock


def start_recorder(upstream: str, out: str, directory: str, *args, env=None, timeout: float = 15.0) -> MockProcess:
    """Start the recording proxy (`python -m mock_upstream.recorder`) in front of `upstream`."""
    argv = ["mock_upstream.recorder", "--port", "0", "--upstream", upstream, "--out", out, "--dir", directory, *args]
    return _start(argv, "mock_upstream recorder listening on ", env, timeout)


def _start(module_args: list, ready_prefix: str, env, timeout: float) -> MockProcess:
    stderr_file = tempfile.TemporaryFile()
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", *module_args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=stderr_file, env=full_env, preexec_fn=_die_with_parent)
    try:
        line = _read_line(proc, timeout)
    except Exception:
        proc.kill()
        proc.wait()
        stderr_file.seek(0)
        detail = stderr_file.read().decode("utf-8", "replace")
        stderr_file.close()
        raise MockError(f"mock_upstream did not start: {detail[-2000:]}") from None
    if not line.startswith(ready_prefix):
        proc.kill()
        proc.wait()
        raise MockError(f"unexpected first line from {module_args[0]}: {line!r}")
    return MockProcess(proc, line[len(ready_prefix):].strip(), stderr_file)


def _die_with_parent() -> None:
    """In the child (Linux): SIGTERM when the test process dies, so a killed pytest leaves no mock."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next stdout line, waiting on the pipe with a deadline (no sleeping); what was read past it
    is kept on `proc` for the next call."""
    deadline = time.monotonic() + timeout
    buf = getattr(proc, "unread_stdout", b"")
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise TimeoutError("no listening line")
            data = os.read(proc.stdout.fileno(), 4096)
            if not data:
                raise EOFError("mock_upstream exited")
            buf += data
    line, proc.unread_stdout = buf.split(b"\n", 1)
    return line.decode()


def raw_exchange(url: str, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw request bytes to http://HOST:PORT and read until the server closes the connection."""
    import socket

    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    deadline = time.monotonic() + 3 * timeout  # in all: keep-alives would reset a per-recv timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no end of the response from %s within %ss" % (url, 3 * timeout))
            sock.settimeout(min(timeout, left))
            piece = sock.recv(65536)
            if not piece:
                return data
            data += piece


def raw_post(path: str, body: dict, headers=None) -> bytes:
    """A complete HTTP/1.1 POST (Connection: close) with a JSON body, as bytes."""
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(payload)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def dechunk(raw: bytes):
    """Split a raw HTTP/1.1 response: (head, body, complete). `complete` is False when a chunked
    body lacks its terminating zero-size chunk (the connection was dropped)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return head, rest, None
    body = b""
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return head, body, False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return head, body, True
        if len(rest) < size + 2:
            return head, body + rest[:size], False
        body, rest = body + rest[:size], rest[size + 2:]
