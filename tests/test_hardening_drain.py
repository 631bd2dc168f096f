"""SIGTERM drains a real gateway process: /readyz turns 503, new connections are refused, a stream
that ends within drain_seconds completes with [DONE], a stalled one gets the in-band draining error
event (no [DONE]), and the process exits 0."""

import http.client
import json
import signal
import uuid

from tests import hardening_helpers as hh
from tests.mock_helpers import dechunk
from tests.servers import wait_until
from tests.wire import chat_body

DRAIN_EVENT = b'data: {"error":"API error: the gateway is shutting down; retry on another instance"}\n\n'


def refused(gateway) -> bool:
    try:
        hh.connect(gateway, timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def get_json(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def test_sigterm_drains_streams_then_exits_0(mock, tmp_path):
    gateway, key = hh.start(str(tmp_path), mock.base, {"drain_seconds": 3, "idle_timeout": 60})
    try:
        test_id = "drain-" + uuid.uuid4().hex
        keepalive = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        assert get_json(keepalive, "GET", "/readyz")[0] == 200
        # ~1 s at real speed: ends within drain_seconds.
        short = hh.open_stream(gateway, key, chat_body(content="chunks=20 delay=50 size=8"),
                               **{"X-Mock-Speed": "1", "Connection": "close"})
        stalled = hh.open_stream(gateway, key, chat_body(), **{"X-Mock-Scenario": "stall", "Connection": "close",
                                                                   "X-Mock-Test-Id": test_id})
        # A whole (non-streamed) answer whose upstream is still silent when drain_seconds run out.
        whole_id = "drain-whole-" + uuid.uuid4().hex
        mock.set_fault(whole_id, {"slow_headers_ms": 60000})
        whole = hh.connect(gateway)
        whole.sendall(hh.raw_request("POST", "/api/v1/chat/completions", hh.auth(
            key, **{"X-Mock-Test-Id": whole_id, "Connection": "close"}), json.dumps(chat_body(stream=False)).encode()))
        mock.wait_entry(test_id=whole_id)
        short_got = hh.read_until(short, b"data: {")
        stalled_got = hh.read_until(stalled, b'" a time,"')
        gateway.signal(signal.SIGTERM)

        status, headers, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(
            get_json(keepalive, "GET", "/readyz")), timeout=5)
        assert headers["Retry-After"] == "1" and json.loads(body) == {"status": "draining"}
        assert wait_until(lambda: refused(gateway), timeout=5)
        # A request on a connection that was already open is answered, with 503 draining.
        status, headers, body = get_json(keepalive, "POST", "/api/v1/chat/completions",
                                         json.dumps(chat_body(stream=False)), hh.auth(key))
        assert status == 503 and headers["Retry-After"] == "1"
        assert json.loads(body)["error"]["code"] == "draining"

        head, short_body, complete = dechunk(short_got + hh.read_all(short))
        assert head.startswith(b"HTTP/1.1 200") and complete
        assert short_body.endswith(b"data: [DONE]\n\n")
        assert short_body.count(b'"content":') == 20

        head, stalled_body, complete = dechunk(stalled_got + hh.read_all(stalled))
        assert head.startswith(b"HTTP/1.1 200") and complete
        assert stalled_body.endswith(b'" a time,"},"finish_reason":null}],"system_fingerprint":"fp_mock"}\n\n'
                                     + DRAIN_EVENT)
        assert b"data: [DONE]" not in stalled_body

        answer = hh.read_all(whole)
        whole.close()
        mock.clear_faults(whole_id)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
        assert b"\r\nRetry-After: 1\r\n" in answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "draining"
        mock.wait_ended(test_id=whole_id, timeout=5)

        assert gateway.wait(15) == 0
        ended = [line["ended"] for line in hh.access_lines(gateway) if line["path"] == "/api/v1/chat/completions"]
        assert sorted(ended) == ["completed", "drained", "drained", "drained"]
        assert "tornado_grok stopped" in gateway.stdout
        mock.wait_ended(test_id=test_id, timeout=5)  # the stalled upstream request was cancelled, not left open
    finally:
        gateway.stop()


def test_sigterm_with_nothing_open_exits_at_once(mock, tmp_path):
    gateway, _key = hh.start(str(tmp_path), mock.base, {"drain_seconds": 30})
    try:
        gateway.signal(signal.SIGTERM)
        assert gateway.wait(10) == 0  # well before drain_seconds
    finally:
        gateway.stop()
