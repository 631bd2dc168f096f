"""Ids belong to keys (tornado_grok/ownership.py): two keys on one gateway, every id-carrying route.

Key B, given an id that key A was handed, gets the same 404 as for an id nobody was ever handed, and
the upstream (the mock's journal) never sees the request: GET, GET ?stream=true (also of a resumable
stream of A's, on the memory and on the Redis store), DELETE, previous_response_id and the deferred
fetch. The mock's ids are predictable (resp_mock_N, deferred_mock_N), so a guessed upstream id is
tried too. A's own ids keep working after a restart and on another process; a deferred completion's
usage is charged once, to its owner.
"""

import json
import os
import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests import resumable_helpers as rh
from tests import servers
from tests.redis_server import skip_unless_available
from tests.servers import wait_until
from tests.wire import SEED_MODEL, bind, bound_ids, events, post

ADMIN = "admin-" + "t" * 24
OPEN = {"requests_per_minute": 0, "concurrent_requests": 0, "admin_key": ADMIN}


def response_body(stream=False, **extra):
    return dict({"model": SEED_MODEL, "input": "hello tenants", "stream": stream}, **extra)


def second_key(g) -> str:
    """Another client key on the same gateway, usable at once."""
    other = servers.add_key(g.argv[g.argv.index("--keys-file") + 1], "b-" + uuid.uuid4().hex[:6])
    wait_until(lambda: requests.get(g.base + "/models", headers=hh.auth(other), timeout=5).status_code == 200,
               timeout=10)
    return other


def tagged(key, test_id):
    return hh.auth(key, **{"X-Mock-Test-Id": test_id})


def upstream_requests(mock, test_id) -> list:
    return [(e["method"], e["path"]) for e in mock.journal(test_id=test_id)]


@pytest.fixture(scope="module")
def two_keys(mock, tmp_path_factory):
    """(gateway, key A, key B)."""
    g, a = hh.start(str(tmp_path_factory.mktemp("tenants")), mock.base, OPEN)
    try:
        yield g, a, second_key(g)
    finally:
        g.stop()


def unknown(g, key, method, path, body=None, test_id=None) -> tuple:
    r = requests.request(method, g.base + path, json=body, headers=tagged(key, test_id or uuid.uuid4().hex),
                         timeout=30)
    return r.status_code, r.json()


def test_a_response_id_is_bound_in_the_body_and_in_every_event_that_carries_it(two_keys):
    g, a, _ = two_keys
    whole = post(g.base + "/responses", response_body(), hh.auth(a))
    rid = whole.json()["id"]
    assert rid == bind(g, a, "response", rid.rsplit(".", 1)[0]) and rid.startswith("resp_mock_")
    streamed = post(g.base + "/responses", response_body(stream=True), hh.auth(a))
    carrying = [b for b in events(streamed.content) if b'"response":{' in b]
    assert [b.split(b"\n", 1)[0] for b in carrying] == [
        b"event: response.created", b"event: response.in_progress", b"event: response.completed"]
    [(upstream_id, client_id)] = bound_ids(streamed.content).items()
    assert all(client_id in b and b'"id":"%s"' % upstream_id not in b for b in carrying)
    # The delta fast path carries no response id and is never rewritten.
    assert not any(client_id in b for b in events(streamed.content) if b not in carrying)


def test_another_keys_response_is_a_404_the_upstream_never_sees(two_keys, mock):
    g, a, b = two_keys
    rid = post(g.base + "/responses", response_body(), hh.auth(a)).json()["id"]
    upstream_id = rid.rsplit(".", 1)[0]
    never = upstream_id + "." + "a" * 26  # a well-formed id the gateway never issued
    for method, query in (("GET", ""), ("GET", "?stream=true"), ("GET", "?stream=true&starting_after=2"),
                          ("DELETE", "")):
        test_id = uuid.uuid4().hex
        theirs = unknown(g, b, method, "/responses/" + rid + query, test_id=test_id)
        guessed = unknown(g, b, method, "/responses/" + upstream_id + query, test_id=test_id)
        forged = unknown(g, b, method, "/responses/" + never + query, test_id=test_id)
        assert theirs == guessed == forged == (404, {"error": {
            "message": "API error: no such response: it does not exist, or belongs to another key",
            "type": "invalid_request_error", "code": "not_found"}}), (method, query)
        assert upstream_requests(mock, test_id) == []
    # B's attempts changed nothing for A: A's response is still there, and A can delete it.
    assert requests.get(g.base + "/responses/" + rid, headers=hh.auth(a), timeout=30).json()["id"] == rid
    deleted = requests.delete(g.base + "/responses/" + rid, headers=hh.auth(a), timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"id": rid, "object": "response", "deleted": True}


def test_another_keys_previous_response_id_is_a_404_the_upstream_never_sees(two_keys, mock):
    g, a, b = two_keys
    rid = post(g.base + "/responses", response_body(instructions="A's secret instructions"), hh.auth(a)).json()["id"]
    for stream in (False, True):
        test_id = uuid.uuid4().hex
        r = post(g.base + "/responses", response_body(stream=stream, previous_response_id=rid), tagged(b, test_id))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert upstream_requests(mock, test_id) == []
    # A continues its own conversation: the upstream gets its own id, and the answer names A's id.
    test_id = uuid.uuid4().hex
    r = post(g.base + "/responses", response_body(previous_response_id=rid), tagged(a, test_id))
    assert r.status_code == 200 and r.json()["previous_response_id"] == rid
    [entry] = mock.journal(test_id=test_id)
    assert entry["body"]["previous_response_id"] == rid.rsplit(".", 1)[0]


def test_another_keys_deferred_completion_is_a_404_and_its_usage_is_charged_once(two_keys, mock):
    g, a, b = two_keys
    before = requests.get(g.url + "/admin/usage", headers=hh.auth(ADMIN), timeout=10).json()["keys"]
    made = post(g.base + "/chat/completions", {"model": SEED_MODEL, "messages": [{"role": "user", "content": "x"}],
                                                "deferred": True}, hh.auth(a))
    request_id = made.json()["request_id"]
    upstream_id = request_id.rsplit(".", 1)[0]
    assert made.status_code == 200 and upstream_id.startswith("deferred_mock_")
    assert request_id == bind(g, a, "deferred", upstream_id)
    path = "/chat/deferred-completion/"
    test_id = uuid.uuid4().hex
    theirs = unknown(g, b, "GET", path + request_id, test_id=test_id)
    guessed = unknown(g, b, "GET", path + upstream_id, test_id=test_id)
    assert theirs == guessed == (404, {"error": {
        "message": "API error: no such deferred completion: it does not exist, or belongs to another key",
        "type": "invalid_request_error", "code": "not_found"}})
    assert upstream_requests(mock, test_id) == []
    # A response id is not a deferred id, even for its own key.
    response = post(g.base + "/responses", response_body(), hh.auth(a)).json()
    assert unknown(g, a, "GET", path + response["id"]) == theirs
    fetched = [requests.get(g.base + path + request_id, headers=hh.auth(a), timeout=30) for _ in range(3)]
    assert [f.status_code for f in fetched] == [200, 200, 200]
    assert fetched[0].json()["choices"][0]["message"]["content"] == "Deferred answer for %s." % upstream_id
    assert fetched[0].json()["usage"]["completion_tokens"] == 4
    after = requests.get(g.url + "/admin/usage", headers=hh.auth(ADMIN), timeout=10).json()["keys"]
    charged = {name: after[name]["completion_tokens"] - before.get(name, {}).get("completion_tokens", 0)
               for name in after}
    # The deferred answer's 4 tokens once for 3 fetches, and the response's own.
    assert charged["hardening"] == 4 + response["usage"]["output_tokens"]
    assert all(n == 0 for name, n in charged.items() if name != "hardening")


def test_a_resumable_stream_of_another_key_is_not_served_from_the_store(two_keys, mock):
    g, a, b = two_keys
    _, body = rh.whole_stream(g, a, speed="0", path="/api/v1/responses", body=response_body(stream=True))
    rid = json.loads(rh.strip_ids(body).split(b"\ndata: ", 1)[1].split(b"\n", 1)[0])["response"]["id"]
    test_id = uuid.uuid4().hex
    r = requests.get(g.base + "/responses/%s?stream=true" % rid, headers=tagged(b, test_id), timeout=30)
    assert r.status_code == 404 and upstream_requests(mock, test_id) == []
    own = requests.get(g.base + "/responses/%s?stream=true" % rid, headers=tagged(a, test_id), timeout=30)
    assert own.status_code == 200 and own.content == rh.strip_ids(body)  # from the store: no upstream GET
    assert upstream_requests(mock, test_id) == []


def test_own_ids_work_after_a_restart_and_a_new_secret_forgets_them(mock, tmp_path):
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    g = servers.start_gateway(folder, mock.base, OPEN)
    try:
        rid = post(g.base + "/responses", response_body(), hh.auth(key)).json()["id"]
    finally:
        g.stop()
    with open(os.path.join(folder, "id_secret")) as f:
        secret = f.read()
    assert len(secret.strip()) == 64 and os.stat(os.path.join(folder, "id_secret")).st_mode & 0o077 == 0
    g = servers.start_gateway(folder, mock.base, OPEN)
    try:
        r = requests.get(g.base + "/responses/" + rid, headers=hh.auth(key), timeout=30)
        assert r.status_code == 200 and r.json()["id"] == rid
    finally:
        g.stop()
    os.unlink(os.path.join(folder, "id_secret"))  # a new secret: every id handed out before is unknown
    g = servers.start_gateway(folder, mock.base, OPEN)
    try:
        r = requests.get(g.base + "/responses/" + rid, headers=hh.auth(key), timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    finally:
        g.stop()


def test_a_bad_secret_file_is_refused_at_start_with_one_line(tmp_path):
    folder = str(tmp_path)
    with open(os.path.join(folder, "id_secret"), "w") as f:
        f.write("not hex\n")
    out = servers.subprocess.run([servers.sys.executable, "run.py", "--port", "0", "--keys-file",
                                  os.path.join(folder, "keys.json")], capture_output=True, text=True, timeout=60,
                                 env={k: v for k, v in os.environ.items() if not k.startswith("TG_")})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "run.py: configuration error: id_secret_file %s: cannot read a hex secret (Error)"
        % os.path.join(folder, "id_secret")]


@skip_unless_available()
def test_on_redis_ids_work_on_every_process_and_only_for_their_key(mock, redis_server, tmp_path):
    folder = str(tmp_path)
    a_key = servers.add_key(os.path.join(folder, "keys.json"), "a")
    b_key = servers.add_key(os.path.join(folder, "keys.json"), "b")
    settings = dict(OPEN, stream_store="redis", ratelimit_backend="redis", redis_url=redis_server.url)
    one = servers.start_gateway(folder, mock.base, settings)
    two = servers.start_gateway(folder, mock.base, settings)
    try:
        _, body = rh.whole_stream(one, a_key, speed="0", path="/api/v1/responses", body=response_body(stream=True))
        plain = rh.strip_ids(body)
        rid = json.loads(plain.split(b"\ndata: ", 1)[1].split(b"\n", 1)[0])["response"]["id"]
        test_id = uuid.uuid4().hex
        assert requests.get(two.base + "/responses/%s?stream=true" % rid, headers=tagged(a_key, test_id),
                            timeout=30).content == plain
        assert requests.get(two.base + "/responses/" + rid, headers=tagged(a_key, test_id),
                            timeout=30).json()["id"] == rid
        for g in (one, two):
            for query in ("", "?stream=true"):
                r = requests.get(g.base + "/responses/" + rid + query, headers=tagged(b_key, test_id), timeout=30)
                assert r.status_code == 404, query
        assert upstream_requests(mock, test_id) == [("GET", "/v1/responses/" + rid.rsplit(".", 1)[0])]
        # A deferred completion's usage is charged once across processes (Redis SET NX).
        made = post(one.base + "/chat/completions", {"model": SEED_MODEL, "deferred": True,
                                                      "messages": [{"role": "user", "content": "x"}]}, hh.auth(a_key))
        request_id = made.json()["request_id"]
        for g in (one, two, one):
            assert requests.get(g.base + "/chat/deferred-completion/" + request_id, headers=hh.auth(a_key),
                                timeout=30).status_code == 200
        usage = lambda: requests.get(two.url + "/admin/usage", headers=hh.auth(ADMIN), timeout=10).json()["keys"]
        wait_until(lambda: usage()["a"]["requests"] == 6, timeout=5)
        assert usage()["a"]["completion_tokens"] == 4 + json.loads(plain.split(b"event: response.completed\ndata: ")[1]
                                                                      .split(b"\n")[0])["response"]["usage"]["output_tokens"]
    finally:
        one.stop()
        two.stop()
