"""Routing, cool-down and circuits of several upstreams, on the wire (bundled mocks as upstreams,
each mock's journal shows what it received).

- weights: 1,000 sequential whole requests over weights 3:1 land 750/250 (smooth weighted round
  robin is exact for sequential traffic; the stated tolerance is +-2 %, 20 requests);
- least busy: while one upstream holds two open streams and the other one, 300 requests all go to
  the other (equal weights);
- a 429 with Retry-After cools its upstream down: no request reaches it meanwhile;
- every upstream cooling: the client gets 429 with the Retry-After of the first one back, and no
  upstream sees the request;
- circuit_failures failures in a row open a circuit; once circuit_seconds have passed, one probe
  request goes to it, and its answer closes the circuit (or opens it again).
"""

import socket
import uuid

import pytest
import requests

from tests import servers
from tests import upstreams_helpers as uh


@pytest.fixture(scope="module")
def mocks():
    yield from uh.two_mocks()


def new_test_id() -> str:
    return "r-" + uuid.uuid4().hex[:12]


def start(tmp_path, mocks, weights=(1000, 1), **settings):
    return uh.start_pool(str(tmp_path), [uh.upstream("a", mocks["a"], weight=weights[0]),
                                         uh.upstream("b", mocks["b"], weight=weights[1])],
                         dict({"circuit_failures": 1000, "requests_per_minute": 0}, **settings))


def test_weights_hold_over_a_thousand_requests(mocks, tmp_path):
    g, key = start(tmp_path, mocks, weights=(3, 1))
    tid = new_test_id()
    try:
        with requests.Session() as session:
            for _ in range(1000):
                assert uh.chat(g, key, tid, session=session).status_code == 200
        on_a, on_b = len(uh.seen(mocks["a"], tid)), len(uh.seen(mocks["b"], tid))
        assert on_a + on_b == 1000
        assert abs(on_a - 750) <= 20 and abs(on_b - 250) <= 20, (on_a, on_b)
    finally:
        g.stop()


def hold_stream(g, key, tid):
    """A stream that has its first event and then stays open (the mock stalls it): a socket."""
    body = b'{"model":"grok-4.3","messages":[{"role":"user","content":"hi"}],"stream":true}'
    s = socket.create_connection((g.url.split("//")[1].split(":")[0], g.port))
    s.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
              + b"\r\nContent-Type: application/json\r\nX-Mock-Test-Id: " + tid.encode()
              + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while b"data: {" not in got:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    return s


def test_the_least_busy_upstream_takes_the_requests(mocks, tmp_path):
    g, key = start(tmp_path, mocks, weights=(1, 1))
    held = new_test_id()
    tid = new_test_id()
    for m in mocks.values():
        m.set_fault(held, {"stall_after": 1})
    sockets = []
    try:
        sockets = [hold_stream(g, key, held) for _ in range(3)]
        counts = {name: len(uh.seen(m, held)) for name, m in mocks.items()}
        assert sorted(counts.values()) == [1, 2]  # one upstream holds two open streams, the other one
        idle = min(counts, key=counts.get)
        busy = max(counts, key=counts.get)
        health = requests.get(g.url + "/healthz").json()["upstreams"]
        assert {u["name"]: u["in_flight"] for u in health} == counts
        with requests.Session() as session:
            for _ in range(300):
                assert uh.chat(g, key, tid, session=session).status_code == 200
        assert len(uh.seen(mocks[busy], tid)) == 0  # equal weights: the one with fewer in flight takes all
        assert len(uh.seen(mocks[idle], tid)) == 300
    finally:
        for s in sockets:
            s.close()
        for m in mocks.values():
            m.clear_faults(held)
        g.stop()


def test_an_upstream_at_its_cap_is_skipped(mocks, tmp_path):
    """"a" (weight 1000, max_concurrent 1) and "b" (weight 1) each hold one open stream: by in-flight
    per weight "a" is far less busy (1/1000 against 1), but it is at its cap, so "b" takes the rest."""
    g, key = uh.start_pool(str(tmp_path), [uh.upstream("a", mocks["a"], weight=1000, max_concurrent=1),
                                           uh.upstream("b", mocks["b"], weight=1)], {"requests_per_minute": 0})
    held, tid = new_test_id(), new_test_id()
    for m in mocks.values():
        m.set_fault(held, {"stall_after": 1})
    sockets = []
    try:
        sockets = [hold_stream(g, key, held) for _ in range(2)]  # "a" first, then "b" (the idle one)
        assert (len(uh.seen(mocks["a"], held)), len(uh.seen(mocks["b"], held))) == (1, 1)
        for _ in range(5):
            assert uh.chat(g, key, tid).status_code == 200
        assert len(uh.seen(mocks["a"], tid)) == 0 and len(uh.seen(mocks["b"], tid)) == 5
        assert [u["state"] for u in requests.get(g.url + "/healthz").json()["upstreams"]] == ["full", "ok"]
    finally:
        for s in sockets:
            s.close()
        for m in mocks.values():
            m.clear_faults(held)
        g.stop()


def test_a_429_cools_its_upstream_down(mocks, tmp_path):
    g, key = start(tmp_path, mocks)
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 429, "retry_after": 300}, times=1)
    try:
        for stream in (False, True, False, False, True, False):
            assert uh.chat(g, key, tid, stream).status_code == 200
        # "a" (weight 1000: every request's first choice) was asked once: it said 429, Retry-After 300.
        assert [e["status"] for e in uh.seen(mocks["a"], tid)] == [429]
        assert len(uh.seen(mocks["b"], tid)) == 6
        [a, b] = requests.get(g.url + "/healthz").json()["upstreams"]
        assert a["state"] == "cooling" and 0 < a["retry_after"] <= 300 and b["state"] == "ok"
        assert 'tornado_grok_upstream_cooldowns_total{upstream="a"} 1.0' in requests.get(g.url + "/metrics").text
    finally:
        g.stop()


def test_every_upstream_cooling_is_a_429_with_the_first_one_back(mocks, tmp_path):
    g, key = start(tmp_path, mocks)
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 429, "retry_after": 300}, times=1)
    mocks["b"].set_fault(tid, {"status": 429, "retry_after": 200}, times=1)
    try:
        for stream in (False, True):
            r = uh.chat(g, key, tid, stream)
            assert r.status_code == 429
            assert 1 <= int(r.headers["Retry-After"]) <= 200  # "b" is back first
            assert b"every upstream is rate limited" in r.content
        # The second request reached nobody: both were cooling down.
        assert len(uh.seen(mocks["a"], tid)) == 1 and len(uh.seen(mocks["b"], tid)) == 1
    finally:
        g.stop()


def test_the_circuit_opens_and_one_probe_closes_it(mocks, tmp_path):
    g, key = start(tmp_path, mocks, circuit_failures=2, circuit_seconds=0.5)
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 500}, times=2)
    try:
        for _ in range(2):
            assert uh.chat(g, key, tid).status_code == 200  # "a" fails, "b" answers
        assert requests.get(g.url + "/healthz").json()["upstreams"][0]["state"] == "open"
        assert uh.chat(g, key, tid).status_code == 200
        assert len(uh.seen(mocks["a"], tid)) == 2  # open: not asked
        servers.wait_until(lambda: requests.get(g.url + "/healthz").json()["upstreams"][0]["state"] == "half_open",
                           timeout=30)
        probe = new_test_id()
        assert uh.chat(g, key, probe).status_code == 200
        assert [e["status"] for e in uh.seen(mocks["a"], probe)] == [200]  # the probe went to "a"...
        assert requests.get(g.url + "/healthz").json()["upstreams"][0]["state"] == "ok"  # ...and closed it
        text = requests.get(g.url + "/metrics").text
        assert 'tornado_grok_upstream_circuit_opens_total{upstream="a"} 1.0' in text
        assert 'tornado_grok_upstream_circuit_open{upstream="a"} 0.0' in text
    finally:
        g.stop()


def test_a_failed_probe_opens_the_circuit_again(mocks, tmp_path):
    g, key = start(tmp_path, mocks, circuit_failures=1, circuit_seconds=0.5)
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 503}, times=2)
    try:
        assert uh.chat(g, key, tid).status_code == 200
        servers.wait_until(lambda: requests.get(g.url + "/healthz").json()["upstreams"][0]["state"] == "half_open",
                           timeout=30)
        assert uh.chat(g, key, tid).status_code == 200  # the probe fails (503), "b" answers
        assert [e["status"] for e in uh.seen(mocks["a"], tid)] == [503, 503]
        assert requests.get(g.url + "/healthz").json()["upstreams"][0]["state"] == "open"
    finally:
        g.stop()


def test_models_limit_where_a_request_goes(mocks, tmp_path):
    g, key = uh.start_pool(str(tmp_path), [uh.upstream("a", mocks["a"], models=["grok-a"]),
                                           uh.upstream("b", mocks["b"], models=["grok-b"])])
    tid = new_test_id()
    try:
        for _ in range(3):
            assert uh.chat(g, key, tid, model="grok-b").status_code == 200
        assert len(uh.seen(mocks["a"], tid)) == 0 and len(uh.seen(mocks["b"], tid)) == 3
        r = uh.chat(g, key, tid, model="grok-c")
        assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_available"
    finally:
        g.stop()
