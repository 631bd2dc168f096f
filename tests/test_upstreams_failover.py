"""Failover before the first byte, on the wire: two bundled mocks as upstreams "a" (weight 1000) and
"b" (weight 1), each with a key of its own (--require-key). With those weights smooth weighted
round robin sends a fresh gateway's first 500 requests to "a" first (this module makes far fewer),
so a fault put on "a" for one test id shows where the request went next, in each mock's journal.

Failover happens for a 429, 500, 502, 503 or 504, a refused connection, a stall before the first
event (stream) or before the answer (whole), for streams and whole answers; never after the client
got a byte (an error after the first chunk ends the stream as it always did).
"""

import json
import os
import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests import upstreams_helpers as uh


@pytest.fixture(scope="module")
def mocks():
    yield from uh.two_mocks()


@pytest.fixture(scope="module")
def pool(mocks, tmp_path_factory):
    g, key = uh.start_pool(str(tmp_path_factory.mktemp("pool")),
                           [uh.upstream("a", mocks["a"], weight=1000), uh.upstream("b", mocks["b"], weight=1)],
                           {"circuit_failures": 1000, "upstream_cooldown": 0, "upstream_attempts": 3,
                            "failover_first_event_timeout": 1.0, "failover_whole_timeout": 1.0})
    yield g, key
    g.stop()


def new_test_id() -> str:
    return "t-" + uuid.uuid4().hex[:12]


def answered_by_b(r, mocks, tid, stream: bool) -> None:
    assert r.status_code == 200, r.text
    if stream:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.content.endswith(b"data: [DONE]\n\n")
        assert uh.stream_text(r.content) == "Mock answer to: hi"
    else:
        assert r.json()["choices"][0]["message"]["content"] == "Mock answer to: hi"
    [on_b] = uh.seen(mocks["b"], tid)
    assert on_b["status"] == 200 and on_b["headers"]["authorization"] != ""


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_an_error_status_goes_to_the_next_upstream(pool, mocks, status, stream):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": status})
    r = uh.chat(g, key, tid, stream)
    [on_a] = uh.seen(mocks["a"], tid)
    assert on_a["status"] == status
    answered_by_b(r, mocks, tid, stream)
    line = hh.access_line(g, r.headers["X-Request-Id"], timeout=20)  # written when the request ends
    assert line["upstream"] == "b" and line["failovers"] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_stall_before_the_first_byte_goes_to_the_next_upstream(pool, mocks, stream):
    g, key = pool
    tid = new_test_id()
    # A stream whose first event does not come (failover_first_event_timeout), an answer that does not
    # come (failover_whole_timeout): the gateway gives up on "a" and asks "b".
    mocks["a"].set_fault(tid, {"stall_after": 0} if stream else {"slow_headers_ms": 600000})
    r = uh.chat(g, key, tid, stream)
    answered_by_b(r, mocks, tid, stream)
    entry = mocks["a"].wait_ended(test_id=tid, timeout=10)
    assert entry["ended"] == "client_closed"  # the gateway cancelled the stalled attempt


@pytest.mark.parametrize("fault", [{"error_after": 2}, {"disconnect_after": 2}], ids=["error", "disconnect"])
def test_no_failover_after_the_first_byte(pool, mocks, fault):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, fault)
    r = uh.chat(g, key, tid, stream=True)
    assert r.status_code == 200
    events = [e for e in r.content.split(b"\n\n") if e]
    assert len(events) == 3  # the two events the client had, then the gateway's error event
    assert b'"error"' in events[2] and b"[DONE]" not in r.content
    assert len(uh.seen(mocks["a"], tid)) == 1
    assert uh.seen(mocks["b"], tid) == []  # the client had bytes: nobody else was asked


def test_a_request_error_of_the_client_does_not_fail_over(pool, mocks):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 400})
    r = uh.chat(g, key, tid)
    assert r.status_code == 400
    assert uh.seen(mocks["b"], tid) == []


def test_each_upstream_gets_its_own_key_and_no_key_is_shown(pool, mocks):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 503})
    answers = [uh.chat(g, key, tid), uh.chat(g, key, tid, stream=True),
               requests.get(g.url + "/healthz"), requests.get(g.url + "/metrics")]
    # Both mocks require their own key: the 503 of "a" and the 200 of "b" were both authenticated.
    assert [e["status"] for e in uh.seen(mocks["a"], tid)] == [503, 503]
    assert [e["status"] for e in uh.seen(mocks["b"], tid)] == [200, 200]
    for r in answers:
        raw = r.content + json.dumps(dict(r.headers)).encode()
        for secret in uh.KEYS.values():
            assert secret.encode() not in raw and secret[4:20].encode() not in raw
    for r in answers[:2]:  # every line of these requests is out once their access lines are
        hh.access_line(g, r.headers["X-Request-Id"], timeout=20)
    for line in g.stderr_lines:
        for secret in uh.KEYS.values():
            assert secret not in line and secret[4:20] not in line


def test_healthz_and_metrics_show_each_upstream(pool, mocks):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 502})
    assert uh.chat(g, key, tid).status_code == 200
    health = requests.get(g.url + "/healthz").json()
    assert [u["name"] for u in health["upstreams"]] == ["a", "b"]
    assert {u["state"] for u in health["upstreams"]} <= {"ok", "cooling"}
    text = requests.get(g.url + "/metrics").text
    for needle in ('tornado_grok_upstream_requests_total{upstream="a"}',
                   'tornado_grok_upstream_requests_total{upstream="b"}',
                   'tornado_grok_upstream_failures_total{kind="status_502",upstream="a"}',
                   'tornado_grok_upstream_failovers_total{upstream="a"}',
                   'tornado_grok_upstream_in_flight{upstream="b"} 0.0',
                   'tornado_grok_upstream_circuit_open{upstream="a"} 0.0'):
        assert needle in text


def test_a_refused_connection_goes_to_the_next_upstream(mocks, tmp_path):
    """An upstream whose port is closed (weight 1000: always tried first) and "b" behind it."""
    g, key = uh.start_pool(str(tmp_path), [uh.upstream("a", url=uh.closed_port_url(), weight=1000),
                                           uh.upstream("b", mocks["b"], weight=1)],
                           {"circuit_failures": 1000})
    try:
        for stream in (False, True):
            tid = new_test_id()
            answered_by_b(uh.chat(g, key, tid, stream), mocks, tid, stream)
        text = requests.get(g.url + "/metrics").text
        assert 'tornado_grok_upstream_failures_total{kind="connect",upstream="a"} 2.0' in text
        assert 'tornado_grok_upstream_failovers_total{upstream="a"} 2.0' in text
    finally:
        g.stop()


def test_responses_fail_over_too(pool, mocks):
    g, key = pool
    for stream in (False, True):
        tid = new_test_id()
        mocks["a"].set_fault(tid, {"status": 500})
        r = requests.post(g.base + "/responses", json={"model": "grok-4.3", "input": "hi", "stream": stream},
                          headers=uh.headers(key, tid, stream), timeout=60)
        assert r.status_code == 200, r.text
        assert [e["status"] for e in uh.seen(mocks["a"], tid)] == [500]
        assert [e["status"] for e in uh.seen(mocks["b"], tid)] == [200]
        if stream:
            assert b"response.completed" in r.content
        else:
            assert r.json()["status"] == "completed"


def test_a_single_upstream_answers_as_it_always_did(mock, tmp_path):
    """One upstream (upstream_url + XAI_API_KEY): its 503 reaches the client, and nothing is held back."""
    from tests import servers
    g = servers.start_gateway(str(tmp_path), mock.base)
    try:
        key = servers.add_key(os.path.join(str(tmp_path), "keys.json"), "one")
        tid = new_test_id()
        mock.set_fault(tid, {"status": 429, "retry_after": 30})
        first = uh.chat(g, key, tid)
        assert first.status_code == 429 and first.headers["Retry-After"] == "30"
        assert uh.chat(g, key, tid).status_code == 429  # still sent upstream: no cool-down with one
        assert len(uh.seen(mock, tid)) == 2
        assert requests.get(g.url + "/healthz").json() == {"status": "ok"}
    finally:
        g.stop()
        mock.clear_faults(tid)


def test_a_resumable_stream_fails_over_too(pool, mocks):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 503})
    r = requests.post(g.base + "/chat/completions", json={"model": "grok-4.3", "stream": True,
                                                          "messages": [{"role": "user", "content": "hi"}]},
                      headers=dict(uh.headers(key, tid, stream=True), **{"X-Resumable": "true"}), timeout=60)
    assert r.status_code == 200 and "X-Stream-Id" in r.headers
    assert uh.stream_text(r.content) == "Mock answer to: hi" and r.content.endswith(b"data: [DONE]\n\n")
    assert [e["status"] for e in uh.seen(mocks["a"], tid)] == [503]
    assert [e["status"] for e in uh.seen(mocks["b"], tid)] == [200]
