"""Global caps: past max_connections open client requests, or max_upstream upstream transfers, a new
request gets 503 with Retry-After and the usual error body at once; requests in flight go on."""

import pytest
import requests

from tests import hardening_helpers as hh
from tests.mock_helpers import dechunk
from tests.wire import chat_body, post

SLOW = chat_body(content="chunks=30 delay=50 size=8")  # about 1.5 s at X-Mock-Speed 1


@pytest.fixture
def capped(mock, tmp_path):
    started = []

    def start(settings):
        g, key = hh.start(str(tmp_path), mock.base, settings)
        started.append(g)
        return g, key

    yield start
    for g in started:
        g.stop()


def check_503(r, cap: str) -> None:
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.headers["X-Request-Id"]
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    err = r.json()["error"]
    assert err["message"] == "API error: the gateway is at capacity (%s); retry shortly" % cap
    assert err["type"] == "service_unavailable" and err["code"] == "overloaded"


def finish(sock, got: bytes) -> bytes:
    raw = got + hh.read_all(sock)
    sock.close()
    head, body, complete = dechunk(raw)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert complete and body.endswith(b"data: [DONE]\n\n"), body[-200:]
    return body


@pytest.mark.parametrize("cap,settings,holding", [
    ("max_connections", {"max_connections": 2}, 2),
    ("max_upstream", {"max_upstream": 1}, 1),
])
def test_past_a_cap_new_requests_get_503_and_streams_in_flight_go_on(capped, cap, settings, holding):
    gateway, key = capped(settings)
    socks = [hh.open_stream(gateway, key, SLOW, **{"X-Mock-Speed": "1", "Connection": "close"})
             for _ in range(holding)]
    got = [hh.read_until(s, b"data: {") for s in socks]  # streaming now
    for stream in (True, False):
        r = post(gateway.base + "/chat/completions", chat_body(stream=stream), hh.auth(key))
        check_503(r, cap)
    models = requests.get(gateway.base + "/models", headers=hh.auth(key), timeout=10)
    check_503(models, cap)
    for s, first in zip(socks, got):
        finish(s, first)  # unaffected: whole answers, ending with [DONE]
    hh.wait_idle(gateway)
    r = post(gateway.base + "/chat/completions", chat_body(), hh.auth(key))
    assert r.status_code == 200 and r.content.endswith(b"data: [DONE]\n\n")
    metrics = requests.get(gateway.url + "/metrics", timeout=5).text
    assert 'tornado_grok_overloaded_total{cap="%s"} 3.0' % cap in metrics
    assert 'tornado_grok_requests_total{endpoint="/api/v1/chat/completions",status="503"} 2.0' in metrics


def test_rejected_requests_hold_nothing(capped):
    gateway, key = capped({"max_connections": 1})
    sock = hh.open_stream(gateway, key, SLOW, **{"X-Mock-Speed": "1", "Connection": "close"})
    got = hh.read_until(sock, b"data: {")
    for _ in range(20):
        assert post(gateway.base + "/chat/completions", chat_body(), hh.auth(key)).status_code == 503
    state = hh.state(gateway)
    assert state["open_requests"] == 1 and state["inflight"] == 1 and state["upstream_active"] == 1
    finish(sock, got)
    hh.wait_idle(gateway)
