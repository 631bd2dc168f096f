"""Helpers of the resumable-stream tests (tests/test_resumable_*.py): start a resumable stream on a
raw socket, read part of it, drop the connection (FIN or RST), resume it with requests."""

import json
import re
import socket
import struct

import requests

from tests import hardening_helpers as hh
from tests.mock_helpers import dechunk
from tests.wire import chat_body

_ID_LINE = re.compile(rb"^id: \d+\n", re.M)


def request_bytes(key: str, resumable: str | None = "true", scenario: str = "story", speed: str = "1",
                  test_id: str | None = None, path: str = "/api/v1/chat/completions", body=None, **extra) -> bytes:
    headers = hh.auth(key, **{"X-Mock-Scenario": scenario, "X-Mock-Speed": speed,
                              "Accept": "text/event-stream"}, **extra)
    if resumable is not None:
        headers["X-Resumable"] = resumable
    if test_id is not None:
        headers["X-Mock-Test-Id"] = test_id
    return hh.raw_request("POST", path, headers, json.dumps(body or chat_body()).encode())


class Partial:
    """A stream read on a raw socket up to some number of complete events, its connection still open."""

    def __init__(self, gateway, key: str, **kwargs):
        self.sock = hh.connect(gateway)
        self.sock.sendall(request_bytes(key, **kwargs))
        self.raw = b""

    def read_events(self, n: int) -> bytes:
        """Reads until the body holds at least n complete events; returns the body so far."""
        while True:
            head, body, complete = dechunk(self.raw)
            if body.count(b"\n\n") >= n or complete:
                self.head = head
                return body
            piece = self.sock.recv(65536)
            if not piece:
                self.head = head
                return body
            self.raw += piece

    def header(self, name: str) -> str:
        return header(self.head, name)

    def cut(self, rst: bool) -> None:
        if rst:  # SO_LINGER 0: close() sends a RST instead of a FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def complete_events(body: bytes) -> tuple:
    """The complete events at the start of body, and the id of the last of them (0 if none)."""
    end = body.rfind(b"\n\n")
    whole = body[:end + 2] if end >= 0 else b""
    ids = re.findall(rb"^id: (\d+)$", whole, re.M)
    return whole, int(ids[-1]) if ids else 0


def resume(gateway, url: str, last_id: int | None, headers: dict | None = None, timeout: float = 30):
    h = dict(headers or {})
    if last_id is not None:
        h["Last-Event-ID"] = str(last_id)
    return requests.get(gateway.url + url, headers=h, timeout=timeout)


def strip_ids(body: bytes) -> bytes:
    return _ID_LINE.sub(b"", body)


def whole_stream(gateway, key: str, resumable: str | None = "true", **kwargs) -> tuple:
    """One stream read to its end on a raw socket: (head, body)."""
    sock = hh.connect(gateway)
    try:
        sock.sendall(request_bytes(key, resumable, **kwargs))
        raw = b""
        while True:
            head, body, complete = dechunk(raw)
            if complete:
                return head, body
            piece = sock.recv(65536)
            assert piece, "the connection closed before the stream ended: %r" % raw[-300:]
            raw += piece
    finally:
        sock.close()


def header(head: bytes, name: str) -> str:
    """A header's value in a raw response head."""
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    raise KeyError(name)


class CuttingProxy:
    """A TCP proxy on a free loopback port in front of `port` that resets its first connection once
    `cut_after` bytes of the answer went through; later connections pass whole."""

    def __init__(self, port: int, cut_after: int):
        import threading
        self.target = port
        self.cut_after = cut_after
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target))
            limit = self.cut_after if self.connections == 1 else None
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, limit), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, limit) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[:limit - sent])
                    dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    # Wakes the other direction's thread (blocked in recv on it): a close alone
                    # would not, and the socket would stay open until that thread returns.
                    dst.shutdown(socket.SHUT_RD)
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
