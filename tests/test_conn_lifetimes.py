"""How long a client connection may hold the gateway without sending it anything useful (raw sockets,
timeouts of 0.5 s): an idle keep-alive connection, half-sent headers and a stalled body are closed
(the body with a 408); a stream longer than all of them still completes; and max_connections counts
every open connection, idle ones included."""

import json
import socket

import pytest
import requests

from tests import hardening_helpers as hh, servers
from tests.mock_helpers import dechunk
from tests.wire import chat_body

SHORT = {"header_timeout": 0.5, "keepalive_timeout": 0.5, "body_timeout": 0.5}
SLOW = chat_body(content="chunks=30 delay=50 size=8")  # about 1.5 s at X-Mock-Speed 1


@pytest.fixture
def start(mock, tmp_path):
    started = []

    def run(settings):
        g, key = hh.start(str(tmp_path), mock.base, settings)
        started.append(g)
        return g, key

    yield run
    for g in started:
        g.stop()


def until_closed(sock: socket.socket) -> bytes:
    """What the server sends before it closes; a socket timeout (10 s) means it never closed."""
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


def test_idle_keepalive_connection_is_closed(start):
    gateway, _ = start(SHORT)
    sock = hh.connect(gateway)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = until_closed(sock)  # answered, kept alive, then closed while idle
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b'{"status":"ok"}')


def test_half_sent_headers_are_closed(start):
    gateway, _ = start(SHORT)
    sock = hh.connect(gateway)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert until_closed(sock) == b""
    sock.close()


def test_stalled_body_gets_408_and_is_closed(start):
    gateway, key = start(SHORT)
    sock = hh.connect(gateway)
    head = hh.raw_request("POST", "/api/v1/chat/completions", hh.auth(key), b"x" * 100)[:-100]
    sock.sendall(head + b'{"model": ')  # 10 of the 100 bytes announced, then nothing
    answer = until_closed(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "body_timeout"
    hh.wait_idle(gateway)


def test_a_stream_longer_than_every_timeout_completes(start):
    gateway, key = start(SHORT)
    sock = hh.open_stream(gateway, key, SLOW, **{"X-Mock-Speed": "1"})  # kept alive after it
    got = hh.read_until(sock, b"0\r\n\r\n")  # the end of the chunked stream
    head, body, complete = dechunk(got)
    assert head.startswith(b"HTTP/1.1 200") and complete
    assert body.endswith(b"data: [DONE]\n\n") and body.count(b'"content":') == 30
    assert until_closed(sock) == b""  # then idle: closed by keepalive_timeout
    sock.close()


def test_max_connections_counts_idle_connections(start):
    gateway, key = start({"max_connections": 3})
    idle = [hh.connect(gateway) for _ in range(3)]
    servers.wait_until(lambda: hh.state(gateway)["open_connections"] == 3)  # all three accepted
    r = requests.post(gateway.base + "/chat/completions", json=chat_body(stream=False), headers=hh.auth(key),
                      timeout=10)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.headers["Connection"] == "close"
    assert r.json()["error"]["message"] == "API error: the gateway is at capacity (max_connections); retry shortly"
    idle.pop().close()
    # Its slot is free once the gateway has seen the close; a state poll would take it meanwhile
    # (every connection takes a slot), so poll with the request itself.
    r = servers.wait_until(lambda: (lambda r: r if r.status_code != 503 else None)(requests.post(
        gateway.base + "/chat/completions", json=chat_body(stream=False), headers=hh.auth(key), timeout=10)))
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    for sock in idle:
        sock.close()
