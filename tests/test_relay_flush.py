"""Each event reaches the client while the upstream is still open, not when its stream ends.

The mock plays the recorded story at its recorded pace (one event every ~40 ms, so one upstream
read each) and then falls silent for ten minutes without ending: every event the client has by then
was sent as it came. A relay that held a read back until a later one (or until the end) passes every
byte-for-byte test and fails this one.
"""

import json
import socket
import time
import uuid

import pytest

from tests.wire import chat_body, direct

UPSTREAM_MODEL = b'"model":"grok-4.20-non-reasoning"'
CLIENT_MODEL = b'"model":"grok-4-1-fast-non-reasoning"'


def mock_story(mock) -> list:
    """The story's events as the gateway's client sees them: the mock's bytes, the model name put back."""
    r = direct(mock, chat_body(model="grok-4.20-non-reasoning"), {"X-Mock-Scenario": "story"})
    assert r.status_code == 200
    return [r.content.replace(UPSTREAM_MODEL, CLIENT_MODEL)]


def read_events(s: socket.socket, count: int, timeout: float = 20.0) -> bytes:
    """Reads the raw response until it holds `count` data events; fails after `timeout` s in all."""
    deadline = time.monotonic() + timeout
    got = b""
    while got.count(b"data: {") < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("%d of %d events within %ss; got %r" % (got.count(b"data: {"), count,
                                                                         timeout, got[-300:]))
        s.settimeout(left)
        try:
            piece = s.recv(65536)
        except socket.timeout:
            continue
        if not piece:
            raise AssertionError("connection closed after %r" % got[-300:])
        got += piece
    return got


@pytest.mark.parametrize("events", [6, 7])
def test_every_event_arrives_before_the_upstream_goes_silent(gateway, mock, key, events):
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"stall_after": events})
    host, port = gateway.url.split("//")[1].split(":")
    body = json.dumps(chat_body()).encode()
    try:
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer %s\r\nX-Mock-Scenario: story\r\nX-Mock-Speed: 1\r\n"
                      b"X-Mock-Test-Id: %s\r\nContent-Length: %d\r\n\r\n"
                      % (host.encode(), key.encode(), test_id.encode(), len(body)) + body)
            got = read_events(s, events)
            assert got.startswith(b"HTTP/1.1 200 OK")
            assert got.count(b"data: {") == events
            assert b"[DONE]" not in got
            assert mock.journal(test_id)[-1]["ended"] is None  # the upstream is still open and silent
    finally:
        mock.clear_faults(test_id)


def test_an_http_1_0_client_gets_the_events_unframed_until_the_connection_closes(gateway, mock, key):
    """HTTP/1.0 has no chunked encoding: the events go out as they are, and the end of the response
    is the end of the connection. (Later events of an HTTP/1.1 stream are written as chunks straight
    to the socket; an HTTP/1.0 stream must never get that framing.)"""
    host, port = gateway.url.split("//")[1].split(":")
    body = json.dumps(chat_body()).encode()
    expected = b"".join(mock_story(mock))
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/v1/chat/completions HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer %s\r\nX-Mock-Scenario: story\r\nX-Mock-Speed: 1\r\n"
                  b"Content-Length: %d\r\n\r\n" % (host.encode(), key.encode(), len(body)) + body)
        raw = b""
        while True:  # until the gateway closes the connection (the socket's timeout bounds each wait)
            piece = s.recv(65536)
            if not piece:
                break
            raw += piece
    head, _, got = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200"  # (tornado names its own version, HTTP/1.1, in the reply)
    assert b"transfer-encoding" not in head.lower()
    assert got == expected
