"""The relay paths leave no reference cycle behind: a finished request's objects are freed by
reference counting, not left for the cyclic garbage collector, whose collections over many requests
in flight are a stall every one of them waits out (tornado_grok/gcpolicy.py). POST /debug/gc (with
debug_endpoints) runs a full collection and names what it found unreachable."""

import json

import pytest
import requests

from tests import servers

CHAT = {"model": "grok-4-1-fast-non-reasoning", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "grok-4.3", "input": "hi"}


@pytest.fixture(scope="module")
def debug_gateway(mock, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("gc"))
    g = servers.start_gateway(folder, mock.base, {"debug_endpoints": True})
    key = servers.add_key(folder + "/keys.json", "gc")
    yield g, key
    g.stop()


def sweep(g) -> dict:
    r = requests.post(g.url + "/debug/gc", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("path,body", [
    ("/chat/completions", dict(CHAT, stream=True)),
    ("/chat/completions", CHAT),
    ("/responses", dict(RESPONSES, stream=True)),
    ("/responses", RESPONSES),
], ids=["chat-stream", "chat-whole", "responses-stream", "responses-whole"])
def test_a_relayed_request_leaves_no_cycle(debug_gateway, path, body):
    g, key = debug_gateway
    with requests.Session() as s:
        sweep(g)  # what earlier tests of this module left
        for _ in range(20):
            r = s.post(g.base + path, json=body, headers={"Authorization": "Bearer " + key}, timeout=30)
            assert r.status_code == 200
            if body.get("stream"):
                assert r.content.rstrip().endswith((b"data: [DONE]", b"}")), r.content[-200:]
        found = sweep(g)
    assert found["unreachable"] == 0, json.dumps(found["types"])


def test_what_the_gateway_made_at_start_is_out_of_the_collectors_reach(debug_gateway):
    found = sweep(debug_gateway[0])
    assert found["frozen"] > 10000  # modules, routes, protobuf descriptors: never walked again
    assert found["threshold"][0] == 5000


def test_debug_gc_is_off_by_default(gateway):
    r = requests.post(gateway.url + "/debug/gc", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
