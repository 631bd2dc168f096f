"""Objects stay with their upstream: a stored response, a previous_response_id chain and a deferred
completion made on one upstream are read, continued and deleted on that upstream, with its key.

Two bundled mocks as upstreams "a" (weight 1000: every request's first choice) and "b" (weight 1);
an object is made on "b" by failing "a" for that one request. Both mocks number their objects the
same way (resp_mock_N, deferred_mock_N), so the same upstream id can exist on both: the id the
client holds names its upstream (ownership.py binds the upstream's name into its tag).
"""

import uuid

import pytest
import requests

from tests import upstreams_helpers as uh


@pytest.fixture(scope="module")
def mocks():
    yield from uh.two_mocks()


@pytest.fixture(scope="module")
def pool(mocks, tmp_path_factory):
    g, key = uh.start_pool(str(tmp_path_factory.mktemp("ids")),
                           [uh.upstream("a", mocks["a"], weight=1000), uh.upstream("b", mocks["b"], weight=1)],
                           {"circuit_failures": 1000})
    yield g, key
    g.stop()


def made_on(pool, mocks, where: str, stream: bool = False) -> str:
    """A response made on upstream `where`; its client id."""
    g, key = pool
    tid = "make-" + uuid.uuid4().hex[:12]
    if where == "b":
        mocks["a"].set_fault(tid, {"status": 503}, times=1)
    r = requests.post(g.base + "/responses", json={"model": "grok-4.3", "input": "hi"},
                      headers=uh.headers(key, tid), timeout=60)
    assert r.status_code == 200, r.text
    assert [e["status"] for e in uh.seen(mocks[where], tid)] == [200]
    return r.json()["id"]


def calls(mocks, tid) -> dict:
    return {name: [(e["method"], e["path"]) for e in uh.seen(m, tid)] for name, m in mocks.items()}


@pytest.mark.parametrize("where", ["a", "b"])
def test_get_and_delete_reach_the_upstream_that_made_the_response(pool, mocks, where):
    g, key = pool
    client_id = made_on(pool, mocks, where)
    upstream_id = client_id.rsplit(".", 1)[0]
    tid = "get-" + uuid.uuid4().hex[:12]
    got = requests.get(g.base + "/responses/" + client_id, headers=uh.headers(key, tid), timeout=60)
    assert got.status_code == 200 and got.json()["id"] == client_id
    streamed = requests.get(g.base + "/responses/" + client_id + "?stream=true",
                            headers=uh.headers(key, tid, stream=True), timeout=60)
    assert streamed.status_code == 200 and client_id.encode() in streamed.content
    deleted = requests.delete(g.base + "/responses/" + client_id, headers=uh.headers(key, tid), timeout=60)
    assert deleted.status_code == 200 and deleted.json()["id"] == client_id
    other = "b" if where == "a" else "a"
    path = "/v1/responses/" + upstream_id
    assert calls(mocks, tid) == {where: [("GET", path), ("GET", path + "?stream=true"), ("DELETE", path)], other: []}


def test_a_chain_continues_on_its_upstream(pool, mocks):
    g, key = pool
    first = made_on(pool, mocks, "b")
    tid = "chain-" + uuid.uuid4().hex[:12]
    for stream in (False, True):
        r = requests.post(g.base + "/responses", json={"model": "grok-4.3", "input": "more", "stream": stream,
                                                       "previous_response_id": first},
                          headers=uh.headers(key, tid, stream), timeout=60)
        assert r.status_code == 200, r.text
    # "a" is every new request's first choice, but the chain lives on "b".
    on_b = uh.seen(mocks["b"], tid)
    assert uh.seen(mocks["a"], tid) == [] and len(on_b) == 2
    assert {e["body"]["previous_response_id"] for e in on_b} == {first.rsplit(".", 1)[0]}


def test_a_chain_does_not_fail_over(pool, mocks):
    """An object's upstream is the only one that has it: its failure is the answer."""
    g, key = pool
    first = made_on(pool, mocks, "b")
    tid = "pinned-" + uuid.uuid4().hex[:12]
    mocks["b"].set_fault(tid, {"status": 503}, times=1)
    r = requests.post(g.base + "/responses", json={"model": "grok-4.3", "input": "more",
                                                   "previous_response_id": first},
                      headers=uh.headers(key, tid), timeout=60)
    assert r.status_code == 502 and uh.seen(mocks["a"], tid) == []


def test_a_deferred_completion_is_fetched_from_its_upstream(pool, mocks):
    g, key = pool
    tid = "deferred-" + uuid.uuid4().hex[:12]
    mocks["a"].set_fault(tid, {"status": 500}, times=1)
    made = uh.chat(g, key, tid, deferred=True)
    assert made.status_code == 200, made.text
    request_id = made.json()["request_id"]
    fetched = requests.get(g.base + "/chat/deferred-completion/" + request_id, headers=uh.headers(key, tid),
                           timeout=60)
    assert fetched.status_code in (200, 202), fetched.text
    upstream_id = request_id.rsplit(".", 1)[0]
    assert calls(mocks, tid)["b"] == [("POST", "/v1/chat/completions"),
                                      ("GET", "/v1/chat/deferred-completion/" + upstream_id)]
    assert calls(mocks, tid)["a"] == [("POST", "/v1/chat/completions")]  # its 500 only


def test_the_same_upstream_id_on_two_upstreams_is_two_objects(pool, mocks):
    g, key = pool
    ids = {where: made_on(pool, mocks, where) for where in ("a", "b")}
    assert ids["a"] != ids["b"]
    for where, client_id in ids.items():
        r = requests.get(g.base + "/responses/" + client_id, headers=uh.headers(key), timeout=60)
        assert r.status_code == 200 and r.json()["id"] == client_id
        # The tag names the upstream: this id with the other's tag is no id at all.
        other = ids["b" if where == "a" else "a"]
        forged = client_id.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
        if forged not in ids.values():
            assert requests.get(g.base + "/responses/" + forged, headers=uh.headers(key),
                                timeout=60).status_code == 404
