"""Helpers of the hardening tests (tests/test_hardening_*.py): the gateway's /debug/state, its access
log, raw sockets. Plain functions; each test module makes its own gateway fixtures from them.
"""

import json
import os
import socket
import time
import uuid

import requests

from tests import servers

IDLE = {"open_streams": 0, "upstream_active": 0, "inflight": 0, "open_requests": 0, "limiter_inflight": 0}


def start(tmp_dir: str, upstream_url: str | None, settings: dict | None = None, key_name: str = "hardening",
          **kwargs):
    """A gateway with debug_endpoints on, and one client key: (gateway, key)."""
    folder = os.path.join(tmp_dir, uuid.uuid4().hex[:8])
    g = servers.start_gateway(folder, upstream_url, dict({"debug_endpoints": True}, **(settings or {})), **kwargs)
    try:
        key = servers.add_key(os.path.join(folder, "keys.json"), key_name)
    except Exception:
        g.stop()
        raise
    return g, key


def auth(key: str, **extra) -> dict:
    return dict({"Authorization": "Bearer " + key, "Content-Type": "application/json"}, **extra)


def state(gateway) -> dict:
    r = requests.get(gateway.url + "/debug/state", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def held(gateway) -> dict:
    """The counters of /debug/state that must all be 0 on an idle gateway."""
    s = state(gateway)
    return {k: s[k] for k in IDLE}


def wait_idle(gateway, timeout: float = 5.0) -> None:
    """Waits until the gateway holds nothing (releases run on the next loop turns, so poll)."""
    try:
        servers.wait_until(lambda: held(gateway) == IDLE, timeout=timeout)
    except AssertionError:
        raise AssertionError("gateway still holds %r" % held(gateway)) from None


def access_lines(gateway) -> list[dict]:
    """The JSON access-log lines the gateway wrote to stderr so far."""
    lines = []
    for line in gateway.stderr_lines:
        line = line.strip()
        if line.startswith("{") and '"request_id"' in line:
            lines.append(json.loads(line))
    return lines


def access_line(gateway, request_id: str, timeout: float = 5.0) -> dict:
    """The access-log line of one request (written when it ends, so it may lag the response)."""
    def find():
        return next((line for line in access_lines(gateway) if line.get("request_id") == request_id), None)
    return servers.wait_until(find, timeout=timeout)


def connect(gateway, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout)


def raw_request(method: str, path: str, headers: dict, body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    lines = ["%s %s %s" % (method, path, version), "Host: 127.0.0.1"]
    lines += ["%s: %s" % (k, v) for k, v in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _recv(sock: socket.socket, size: int, deadline: float, what) -> bytes:
    """One recv that gives up at `deadline` (a per-recv socket timeout alone never fires while the
    gateway sends keep-alives, so a stuck stream would hang the test instead of failing it)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise AssertionError("no end of %s within the deadline" % what())
    sock.settimeout(left)
    try:
        return sock.recv(size)
    except socket.timeout:
        raise AssertionError("no end of %s within the deadline" % what()) from None


def read_all(sock: socket.socket, timeout: float = 60.0) -> bytes:
    """Everything until the server closes the connection; fails after `timeout` seconds in all."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        piece = _recv(sock, 262144, deadline, lambda: "the response (%d bytes so far)" % len(data))
        if not piece:
            return bytes(data)
        data += piece


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_stream(gateway, key: str, body: dict, version: str = "HTTP/1.1", **headers) -> socket.socket:
    """Sends a streaming chat request on a raw socket and returns the socket, nothing read yet."""
    s = connect(gateway)
    payload = json.dumps(body).encode()
    s.sendall(raw_request("POST", "/api/v1/chat/completions", auth(key, **headers), payload, version))
    return s


def read_until(sock: socket.socket, marker: bytes, got: bytes = b"", timeout: float = 30.0,
               count: int = 1) -> bytes:
    """Reads until `marker` was received (`count` times); fails after `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    while got.count(marker) < count:
        piece = _recv(sock, 65536, deadline, lambda: "%d x %r; got %r" % (count, marker, got[-300:]))
        if not piece:
            raise AssertionError("connection closed before %r; got %r" % (marker, got[-300:]))
        got += piece
    return got


def dechunk(raw: bytes):
    """(head, body, complete) of a raw HTTP/1.1 response, linear in its size (mock_helpers.dechunk is
    fine for short answers; this one is for the tens of megabytes of the backpressure tests)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return head, rest, None
    parts, pos = [], 0
    while True:
        eol = rest.find(b"\r\n", pos)
        if eol < 0:
            return head, b"".join(parts), False
        size = int(rest[pos:eol].split(b";")[0], 16)
        if size == 0:
            return head, b"".join(parts), True
        start = eol + 2
        parts.append(rest[start:start + size])
        if len(rest) < start + size + 2:
            return head, b"".join(parts), False
        pos = start + size + 2
