"""Two connection limits of docs/configuration.md at their edges (raw sockets): exactly `max_header_count`
header lines pass and one more is a 431; an idle keep-alive connection is closed by
`keepalive_timeout`, not by a much longer `header_timeout`."""

import json
import socket

import pytest

from tests import hardening_helpers as hh


def exchange(gateway, head: bytes) -> bytes:
    sock = hh.connect(gateway)
    try:
        sock.sendall(head)
        return hh.read_all(sock, timeout=30)
    finally:
        sock.close()


def healthz_with_header_lines(count: int) -> bytes:
    """GET /healthz with exactly `count` header lines (Host and Connection among them)."""
    return (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + b"".join(b"x-h%d: v\r\n" % i for i in range(count - 2)) + b"\r\n")


@pytest.fixture(scope="module")
def few_headers(mock, tmp_path_factory):
    gateway, _ = hh.start(str(tmp_path_factory.mktemp("hdrs")), mock.base, {"max_header_count": 10})
    yield gateway
    gateway.stop()


@pytest.mark.parametrize("limit", [100, 10])
def test_max_header_count_lines_pass_and_one_more_is_431(gateway, few_headers, limit):
    target = gateway if limit == 100 else few_headers  # the default (100), and a setting of 10
    assert exchange(target, healthz_with_header_lines(limit)).startswith(b"HTTP/1.1 200 OK\r\n")
    refused = exchange(target, healthz_with_header_lines(limit + 1))
    assert refused.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), refused[:200]
    assert json.loads(refused.partition(b"\r\n\r\n")[2])["error"] == {
        "message": "API error: the request has more than %d header lines" % limit,
        "type": "invalid_request_error", "code": "too_many_headers"}


def test_an_idle_keepalive_connection_closes_after_keepalive_timeout_not_header_timeout(mock, tmp_path):
    # header_timeout 60 s, keepalive_timeout 0.5 s: a close within the socket's 15 s bound can only
    # be keepalive_timeout's (a gateway that used header_timeout for idle keep-alive would hold it).
    gateway, _ = hh.start(str(tmp_path), mock.base, {"header_timeout": 60, "keepalive_timeout": 0.5})
    try:
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=15)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while True:
            try:
                piece = sock.recv(65536)
            except socket.timeout:
                raise AssertionError("the idle keep-alive connection was still open after 15 s; got %r"
                                     % answer[-200:]) from None
            if not piece:
                break
            answer += piece
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b'{"status":"ok"}')
        assert b"Connection: close" not in answer  # kept alive after the answer, then closed while idle
    finally:
        gateway.stop()
