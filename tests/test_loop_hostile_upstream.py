"""A hostile upstream: an event that never ends, a whole answer of 300 MB, a gzip bomb, an endless
error body. Each is refused with a 502 once its bound is passed, the gateway hangs up on the upstream
(it does not read to the end), and its memory grows by far less than what was sent.

The upstream is a raw-socket server written for this test, on a free loopback port; the model name of
each request says how it misbehaves.
"""

import json
import socket
import struct
import threading
import zlib

import pytest
import requests

from tests import hardening_helpers as hh

MiB = 1024 * 1024
TOTAL = 300 * MiB  # what the upstream is ready to send; a gateway that reads it all fails the test
MAX_EVENT = 1 * MiB
MAX_BODY = 8 * MiB
GROWTH = 48 * MiB  # allowed VmHWM growth per request: the bounds, buffers and allocator slack

_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
_CHUNK = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
          b'[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n')


def gzip_bomb(mib: int) -> bytes:
    """`mib` MiB of zeros as one gzip member of ~1 KB per MiB (one deflate block, repeated)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, history reset
    crc, zeros = 0, bytes(MiB)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + block * mib + c.flush()
            + struct.pack("<II", crc, (mib * MiB) & 0xFFFFFFFF))


def _repeat(head: bytes, piece: bytes, first: bytes = b""):
    yield head + first
    for _ in range(TOTAL // len(piece)):
        yield piece


def _plays(bomb: bytes) -> dict:
    json_head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    return {
        # data: lines and never the blank line that ends the event
        "endless-lines": lambda: _repeat(_SSE_HEAD, b'data: {"a":1}\n' * 4096),
        # one data: line that never ends
        "endless-line": lambda: _repeat(_SSE_HEAD, b"a" * 65536, b"data: "),
        # a good event first (the client's 200 has gone out), then the endless event
        "event-then-lines": lambda: _repeat(_SSE_HEAD, b'data: {"a":1}\n' * 4096, _CHUNK),
        # a whole answer that says it is 300 MB, and one that says nothing and is
        "huge-length": lambda: _repeat(json_head + b"Content-Length: %d\r\n\r\n" % TOTAL, b"a" * 65536, b'{"a":"'),
        "huge-unannounced": lambda: _repeat(json_head + b"Connection: close\r\n\r\n", b"a" * 65536, b'{"a":"'),
        "gzip-bomb": lambda: iter([json_head + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                                   % len(bomb) + bomb]),
        # a streamed request answered with an error status and an error body without end
        # a stream that ends with [DONE] but whose connection the upstream then keeps open (None:
        # wait until the gateway hangs up)
        "done-then-silent": lambda: iter([_SSE_HEAD + _CHUNK + b"data: [DONE]\n\n", None]),
        # one read holding a comment (so it takes the parser's path) and three events, then [DONE]
        "comment-and-events": lambda: iter([_SSE_HEAD + b": hello\n\n" + _CHUNK * 3 + b"data: [DONE]\n\n"]),
        # an error status with an empty body
        "empty-503": lambda: iter([b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"]),
        "endless-error": lambda: _repeat(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json"
                                         b"\r\nConnection: close\r\n\r\n", b"e" * 65536, b'{"code":"x","error":"'),
    }


class HostileUpstream:
    """The server: a thread per connection; `.sent[model]` is what it wrote before the other end hung
    up (or the whole play), `.cut[model]` whether the other end hung up first."""

    def __init__(self):
        self.plays = _plays(gzip_bomb(TOTAL // MiB))
        self.sent: dict = {}
        self.cut: dict = {}
        self.done = threading.Condition()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d/v1" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # A small send buffer: what `sent` counts beyond what the gateway read is then small too.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        with conn:
            got = b""
            while b"\r\n\r\n" not in got:
                piece = conn.recv(65536)
                if not piece:
                    return
                got += piece
            head, _, body = got.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            model = json.loads(body)["model"]
            sent, cut = 0, False
            try:
                for piece in self.plays[model]():
                    if piece is None:
                        conn.settimeout(60)
                        if conn.recv(1) == b"":  # the gateway hung up
                            raise ConnectionResetError()
                        continue
                    conn.sendall(piece)
                    sent += len(piece)
            except OSError:
                cut = True
            with self.done:
                self.sent[model], self.cut[model] = sent, cut
                self.done.notify_all()

    def wait(self, model: str) -> tuple:
        with self.done:
            assert self.done.wait_for(lambda: model in self.sent, timeout=30), model
            return self.sent[model], self.cut[model]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def hostile():
    h = HostileUpstream()
    yield h
    h.close()


@pytest.fixture(scope="module")
def gateway(hostile, tmp_path_factory):
    g, key = hh.start(str(tmp_path_factory.mktemp("hostile")), hostile.url,
                      {"max_event_size": MAX_EVENT, "max_upstream_body": MAX_BODY})
    yield g, key
    g.stop()


def vm_hwm(g) -> int:
    """The gateway's peak resident memory so far, in bytes (VmHWM of /proc/PID/status)."""
    with open("/proc/%d/status" % g.proc.pid) as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def ask(g, key: str, model: str, stream: bool) -> requests.Response:
    before = vm_hwm(g)
    r = requests.post(g.base + "/chat/completions", headers=hh.auth(key), timeout=60,
                      json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    r.growth = vm_hwm(g) - before
    return r


def hung_up(hostile, model: str) -> int:
    """Asserts the gateway closed the upstream connection long before the play's end; returns bytes sent."""
    sent, cut = hostile.wait(model)
    assert cut and sent < TOTAL // 4, (sent, cut)
    return sent


EVENT_TOO_LARGE = (b'data: {"error":"API error: the upstream sent an event larger than max_event_size (%d bytes)"}\n\n'
                   % MAX_EVENT)


@pytest.mark.parametrize("model", ["endless-lines", "endless-line"])
def test_an_event_that_never_ends_is_a_502(gateway, hostile, model):
    g, key = gateway
    r = ask(g, key, model, stream=True)
    assert r.status_code == 502
    assert r.content == EVENT_TOO_LARGE
    hung_up(hostile, model)
    assert r.growth < GROWTH, r.growth
    hh.wait_idle(g)


def test_an_endless_event_after_the_first_is_an_in_band_502(gateway, hostile):
    g, key = gateway
    r = ask(g, key, "event-then-lines", stream=True)
    assert r.status_code == 200
    assert r.content == _CHUNK + EVENT_TOO_LARGE  # no [DONE]
    hung_up(hostile, "event-then-lines")
    assert r.growth < GROWTH, r.growth
    hh.wait_idle(g)


@pytest.mark.parametrize("model", ["huge-length", "huge-unannounced"])
def test_a_whole_answer_over_max_upstream_body_is_a_502(gateway, hostile, model):
    g, key = gateway
    r = ask(g, key, model, stream=False)
    assert r.status_code == 502
    assert r.json()["error"] == {
        "message": "API error: the upstream's answer is larger than max_upstream_body (%d bytes)" % MAX_BODY,
        "type": "upstream_error", "code": "upstream_too_large"}, r.text
    sent = hung_up(hostile, model)
    if model == "huge-length":  # refused from its Content-Length, before the body was read
        assert sent < MAX_BODY // 4, sent
    assert r.growth < GROWTH, r.growth
    hh.wait_idle(g)


def test_a_gzip_bomb_is_never_inflated(gateway, hostile):
    # The gateway does not ask for compression and does not decode it: a compressed body is a body
    # that is not JSON, 502 at once, its 300 KB never turned into 300 MB.
    g, key = gateway
    r = ask(g, key, "gzip-bomb", stream=False)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_bad_json", r.text
    assert r.growth < GROWTH, r.growth
    hh.wait_idle(g)


def test_an_endless_error_body_is_not_read_to_its_end(gateway, hostile):
    g, key = gateway
    r = ask(g, key, "endless-error", stream=True)
    assert r.status_code == 502
    assert r.content.startswith(b'data: {"error":"API error: upstream error (HTTP 500): '), r.content[:200]
    assert len(r.content) < 70 * 1024
    hung_up(hostile, "endless-error")
    assert r.growth < GROWTH, r.growth
    hh.wait_idle(g)


def test_a_stream_ends_at_done_though_the_upstream_keeps_its_connection_open(gateway, hostile):
    """The client's response ends with [DONE], and the upstream transfer does not outlive it."""
    g, key = gateway
    r = requests.post(g.base + "/chat/completions", headers=hh.auth(key), timeout=20,
                      json={"model": "done-then-silent", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.content == _CHUNK + b"data: [DONE]\n\n"
    with hostile.done:  # the response ended at [DONE], not when the upstream was cut (DONE_GRACE later)
        assert "done-then-silent" not in hostile.sent
    sent, cut = hostile.wait("done-then-silent")
    assert cut
    hh.wait_idle(g)


@pytest.mark.parametrize("stream", [True, False])
def test_an_error_status_without_a_body_is_named_in_the_error(gateway, stream):
    g, key = gateway
    r = ask(g, key, "empty-503", stream=stream)
    assert r.status_code == 502  # an upstream 5xx is the gateway's 502, naming the upstream's status
    message = "API error: upstream error (HTTP 503): upstream returned HTTP 503"
    if stream:
        assert r.content == b'data: {"error":"%s"}\n\n' % message.encode(), r.content
    else:
        assert r.json()["error"]["message"] == message, r.text


def test_events_relayed_from_one_parsed_read_are_each_counted(gateway):
    g, key = gateway
    r = ask(g, key, "comment-and-events", stream=True)
    assert r.content == _CHUNK * 3 + b"data: [DONE]\n\n"
    line = hh.access_line(g, r.headers["X-Request-Id"])
    assert (line["events"], line["bytes"], line["ended"]) == (4, len(r.content), "completed")


def test_the_gateway_still_answers(gateway):
    g, key = gateway
    assert requests.get(g.url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert "Traceback" not in g.stderr
