"""mock_upstream/player.py over the wire: the mock (a subprocess, speed 0, plus the small recordings
below) plays a Plan's status, headers, timed writes and actions; the bytes are read from a raw
socket, with the time each part arrived, and the journal says how each request ended.

Timing is asserted as lower bounds only (measured from before the request was sent, so the mock's
own clock cannot be behind it): a busy machine makes a stream slower, never faster. Every wait is
on bytes, the connection's end or the journal, with a deadline; nothing sleeps.
"""

import json
import os
import socket
import time
import urllib.parse
import uuid

import pytest

from tests.mock_helpers import dechunk, mock_headers, raw_post, start_mock

AUTH = {"Authorization": "Bearer test-key-0123456789"}
CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
SLACK = 0.005  # float rounding between two processes' monotonic clocks; far below any delay here

RECORDINGS = {
    # 201, its own header, a comment between two events, [DONE].
    "player_shape": [{"format": "mock-recording/1", "status": 201, "kind": "stream",
                      "headers": {"Content-Type": "text/event-stream", "X-Upstream": "u1"}},
                     {"data": {"n": 1}}, {"comment": "c"}, {"data": {"n": 2}}, {"data": "[DONE]"}],
    # Three events 100 ms apart (times the speed), a comment, [DONE].
    "player_timed": [{"format": "mock-recording/1", "kind": "stream", "headers": {"Content-Type": "text/event-stream"}},
                     {"delay_ms": 100, "data": {"n": 1}}, {"delay_ms": 100, "data": {"n": 2}},
                     {"comment": "c"}, {"delay_ms": 100, "data": {"n": 3}}, {"data": "[DONE]"}],
    # A whole answer that is not JSON, after 200 ms (times the speed).
    "player_plain": [{"format": "mock-recording/1", "kind": "json",
                      "headers": {"Content-Type": "text/plain; charset=utf-8", "X-Upstream": "u2"}},
                     {"delay_ms": 200, "body": "plain text"}],
}
E1, C, E2, DONE = b'data: {"n":1}\n\n', b": c\n\n", b'data: {"n":2}\n\n', b"data: [DONE]\n\n"
SHAPE_BODY = E1 + C + E2 + DONE


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    folder = tmp_path_factory.mktemp("player_recordings")
    for name, lines in RECORDINGS.items():
        (folder / (name + ".jsonl")).write_text("".join(json.dumps(line) + "\n" for line in lines))
    with start_mock("--speed", "0", "--recordings", str(folder)) as m:
        yield m


@pytest.fixture
def test_id():
    return "player-" + uuid.uuid4().hex[:8]


class Wire:
    """One raw HTTP/1.1 exchange, read as it arrives; `t0` is taken before connecting."""

    def __init__(self, mock, scenario, test_id, body=CHAT, speed=None, timeout=10.0):
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout
        url = urllib.parse.urlsplit(mock.url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        self.sock.sendall(raw_post("/v1/chat/completions", body, {**AUTH, **mock_headers(scenario, test_id, speed)}))
        self.data = b""
        self.closed = False

    def until(self, wanted: bytes) -> float:
        """Seconds from t0 until `wanted` had arrived (AssertionError if the connection ends first)."""
        while wanted not in self.data:
            assert self._recv(), "the connection ended before %r: %r" % (wanted, self.data)
        return time.monotonic() - self.t0

    def to_end(self) -> float:
        """Seconds from t0 until the mock closed the connection."""
        while self._recv():
            pass
        return time.monotonic() - self.t0

    def _recv(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer within the deadline; so far: %r" % self.data)
        self.sock.settimeout(left)
        piece = self.sock.recv(65536)
        self.data += piece
        return bool(piece)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def split_head(raw: bytes):
    """(status line, {lower-case name: value}) of a raw response."""
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return head[0], {k.lower(): v for k, _, v in (line.partition(": ") for line in head[1:])}


def ended(mock, test_id) -> dict:
    return mock.wait_ended(test_id=test_id, timeout=5)


# -- chunked streams ----------------------------------------------------------------------------------

def test_stream_status_headers_bytes_and_journal(mock, test_id):
    with Wire(mock, "player_shape", test_id) as w:
        w.to_end()
    status, headers = split_head(w.data)
    assert status == "HTTP/1.1 201 Created"
    assert (headers["content-type"], headers["cache-control"], headers["x-upstream"],
            headers["transfer-encoding"]) == ("text/event-stream", "no-cache", "u1", "chunked")
    assert dechunk(w.data)[1:] == (SHAPE_BODY, True)
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["status"], entry["events"], entry["tcp_nodelay"]) == ("complete", 201, 3, True)


@pytest.mark.parametrize("framing", ["chunked", "close_delimited"])
def test_a_stream_without_done_ends_as_a_fault(mock, test_id, framing):
    mock.set_fault(test_id, {"error_after": 1, "error": "boom", "close_delimited": framing == "close_delimited"},
                   times=1)
    with Wire(mock, "player_shape", test_id) as w:
        w.to_end()
    head, body, complete = dechunk(w.data)
    assert body == E1 + b'data: {"code":"Internal error","error":"boom"}\n\n'
    assert complete is (True if framing == "chunked" else None)
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["events"]) == ("fault", 2)


@pytest.mark.parametrize("framing", ["chunked", "close_delimited"])
def test_recorded_delays_after_slow_headers(mock, test_id, framing):
    """Each event is due at the request's arrival + the held-back headers + the delays so far."""
    mock.set_fault(test_id, {"slow_headers_ms": 150, "close_delimited": framing == "close_delimited"}, times=1)
    with Wire(mock, "player_timed", test_id, speed=1) as w:
        head = w.until(b"\r\n\r\n")
        n1 = w.until(b'data: {"n":1}\n\n')
        n2 = w.until(b'data: {"n":2}\n\n')
        n3 = w.until(b'data: {"n":3}\n\n')
        w.to_end()
    assert head >= 0.150 - SLACK
    assert n1 >= 0.250 - SLACK and n2 >= 0.350 - SLACK and n3 >= 0.450 - SLACK
    assert dechunk(w.data)[1] == b'data: {"n":1}\n\ndata: {"n":2}\n\n: c\n\ndata: {"n":3}\n\n' + DONE
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["events"]) == ("complete", 4)


@pytest.mark.parametrize("framing", ["chunked", "close_delimited"])
def test_a_stall_holds_then_ends_without_done(mock, test_id, framing):
    mock.set_fault(test_id, {"stall_after": 1, "stall_ms": 200, "close_delimited": framing == "close_delimited"},
                   times=1)
    with Wire(mock, "player_shape", test_id) as w:
        end = w.to_end()
    assert end >= 0.200 - SLACK
    assert dechunk(w.data)[1] == E1
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["events"]) == ("fault", 1)


@pytest.mark.parametrize("framing", ["chunked", "close_delimited"])
@pytest.mark.parametrize("events", [0, 2])
def test_what_came_before_a_stall_is_sent_and_the_client_may_leave(mock, test_id, framing, events):
    """The head and each event are flushed as they are written, not held until the stream ends; a
    client leaving during the 600 s stall ends it at once, as client_closed."""
    mock.set_fault(test_id, {"stall_after": events, "close_delimited": framing == "close_delimited"}, times=1)
    with Wire(mock, "player_shape", test_id, timeout=5) as w:
        w.until(b"\r\n\r\n" if events == 0 else E2)
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["events"]) == ("client_closed", events)


@pytest.mark.parametrize("framing", ["chunked", "close_delimited"])
def test_disconnect_after_ms_drops_a_stall(mock, test_id, framing):
    mock.set_fault(test_id, {"stall_after": 1, "disconnect_after_ms": 150,
                             "close_delimited": framing == "close_delimited"}, times=1)
    with Wire(mock, "player_shape", test_id) as w:
        end = w.to_end()
    assert end >= 0.150 - SLACK
    assert dechunk(w.data)[1:] == (E1, False if framing == "chunked" else None)
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["events"]) == ("fault", 1)


@pytest.mark.parametrize("framing", ["chunked", "close_delimited"])
def test_disconnect_step_drops_the_connection(mock, test_id, framing):
    mock.set_fault(test_id, {"disconnect_after": 1, "close_delimited": framing == "close_delimited"}, times=1)
    with Wire(mock, "player_shape", test_id) as w:
        w.to_end()
    assert dechunk(w.data)[1:] == (E1, False if framing == "chunked" else None)
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["events"]) == ("fault", 1)


# -- close-delimited streams (raw HTTP/1.1) -----------------------------------------------------------

def test_close_delimited_head_and_body_bytes(mock, test_id):
    mock.set_fault(test_id, {"close_delimited": True, "retry_after": 3}, times=1)
    with Wire(mock, "player_shape", test_id) as w:
        w.to_end()
    # The recording's own Content-Type is not repeated; its other headers and the fault's follow.
    assert w.data == (b"HTTP/1.1 201 Created\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                      b"X-Upstream: u1\r\nRetry-After: 3\r\nConnection: close\r\n\r\n" + SHAPE_BODY)
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["status"], entry["events"], entry["tcp_nodelay"]) == ("complete", 201, 3, True)


# -- whole (non-stream) answers -----------------------------------------------------------------------

def test_whole_answer_after_its_recorded_delay(mock, test_id):
    with Wire(mock, "player_plain", test_id, body=dict(CHAT, stream=False), speed=1) as w:
        end = w.to_end()
    assert end >= 0.200 - SLACK
    status, headers = split_head(w.data)
    assert status == "HTTP/1.1 200 OK"
    assert (headers["content-type"], headers["x-upstream"], headers["content-length"]) == (
        "text/plain; charset=utf-8", "u2", "10")
    assert w.data.endswith(b"\r\n\r\nplain text")
    entry = ended(mock, test_id)
    assert (entry["ended"], entry["status"], entry["events"]) == ("complete", 200, 0)


def test_whole_answer_dropped_after_disconnect_after_ms(mock, test_id):
    mock.set_fault(test_id, {"disconnect_after_ms": 150}, times=1)
    with Wire(mock, "player_plain", test_id, body=dict(CHAT, stream=False)) as w:
        end = w.to_end()
    assert end >= 0.150 - SLACK
    assert w.data == b""
    assert ended(mock, test_id)["ended"] == "fault"
