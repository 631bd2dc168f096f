"""A finished request leaves no reference cycle behind, relayed or refused: its objects are freed by
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
    g = servers.start_gateway(folder, mock.base, {"debug_endpoints": True, "forward_mock_headers": True})
    key = servers.add_key(folder + "/keys.json", "gc")
    yield g, key
    g.stop()


def sweep(g) -> dict:
    r = requests.post(g.url + "/debug/gc", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("path,body,headers,status", [
    ("/chat/completions", dict(CHAT, stream=True), {}, 200),
    ("/chat/completions", CHAT, {}, 200),
    ("/responses", dict(RESPONSES, stream=True), {}, 200),
    ("/responses", RESPONSES, {}, 200),
    ("/chat/completions", dict(CHAT, stream=True), {"Authorization": "Bearer not-a-key"}, 401),
    ("/chat/completions", CHAT, {"Authorization": "Bearer not-a-key"}, 401),
    ("/chat/completions", {"model": 1}, {}, 400),
    ("/nothing", None, {}, 404),
    ("/chat/completions", dict(CHAT, stream=True), {"X-Mock-Scenario": "http_500"}, 502),
], ids=["chat-stream", "chat-whole", "responses-stream", "responses-whole", "bad-key-stream", "bad-key",
        "bad-body", "no-such-path", "upstream-500"])
def test_a_request_leaves_no_cycle(debug_gateway, path, body, headers, status):
    g, key = debug_gateway
    with requests.Session() as s:
        sweep(g)  # what earlier tests of this module left
        for _ in range(20):
            r = s.request("POST" if body is not None else "GET", g.base + path, json=body, timeout=30,
                          headers=dict({"Authorization": "Bearer " + key}, **headers))
            assert r.status_code == status, r.text
            if status == 200 and body.get("stream"):  # (a stream's body, whole)
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
