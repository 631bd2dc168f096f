"""GET /api/v1/responses/{id}?stream=true&starting_after=N from the stream store: a
Responses stream started with `X-Resumable: true` is read again by the OpenAI SDK's
`responses.retrieve(id, stream=True, starting_after=N)` from the gateway's store (by the events' own
sequence_number, no `id:` lines), on its own process (memory) and on another one (Redis); the mock
upstream never sees the GET. Another key's GET, or a response the store does not know, is relayed
upstream as before; another key's id is a 404 that the upstream never sees.""" 

import json
import os
import uuid

import openai
import pytest
import requests

from tests import hardening_helpers as hh
from tests import resumable_helpers as rh
from tests import servers
from tests.redis_server import skip_unless_available
from tests.servers import wait_until
from tests.wire import SEED_MODEL, SEED_PROMPT, bind, unbound

BODY = {"model": SEED_MODEL, "input": SEED_PROMPT, "stream": True}
PATH = "/api/v1/responses"
OPEN = {"requests_per_minute": 0, "concurrent_requests": 0}
RESPONSE_ID = "resp_mock_story"  # the upstream's id of the mock's responses_story


def client_id(g, key) -> str:
    """The story's response id as the gateway hands it to this key."""
    return bind(g, key, "response", RESPONSE_ID)


def events(body: bytes) -> list:
    return [e + b"\n\n" for e in body.split(b"\n\n")[:-1]]


def sequence(event: bytes) -> int:
    return json.loads(event.split(b"\ndata: ", 1)[1])["sequence_number"]


def after(plain: bytes, n: int) -> bytes:
    """The uninterrupted stream's events whose sequence_number is over n."""
    return b"".join(e for e in events(plain) if sequence(e) > n)


def start_and_drop(g, key, test_id: str, n_events: int = 4) -> tuple:
    """A resumable Responses stream (the story at speed 1) read for n events, then dropped (RST):
    (the events got, their last sequence_number)."""
    partial = rh.Partial(g, key, path=PATH, body=BODY, test_id=test_id)
    got, _ = rh.complete_events(partial.read_events(n_events))
    partial.cut(True)
    got = rh.strip_ids(got)
    return got, sequence(events(got)[-1])


def sdk_retrieve(g, key, test_id: str, n: int) -> list:
    client = openai.OpenAI(api_key=key, base_url=g.base, max_retries=0)
    stream = client.responses.retrieve(client_id(g, key), stream=True, starting_after=n,
                                       extra_headers={"X-Mock-Test-Id": test_id})
    return [event.model_dump(mode="json", exclude_unset=True) for event in stream]


def wire_retrieve(g, key, test_id: str, n: int) -> requests.Response:
    return requests.get(g.base + "/responses/%s?stream=true&starting_after=%d" % (client_id(g, key), n),
                        headers=hh.auth(key, **{"X-Mock-Test-Id": test_id}), timeout=30)


def upstream_gets(mock, test_id: str) -> list:
    return [e for e in mock.journal(test_id=test_id) if e.get("method") == "GET"]


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    g, key = hh.start(str(tmp_path_factory.mktemp("resumable_responses")), mock.base, OPEN)
    yield g, key
    g.stop()


@pytest.fixture(scope="module")
def plain(gw):
    g, key = gw
    return rh.whole_stream(g, key, resumable=None, speed="0", path=PATH, body=BODY)[1]


def test_the_sdk_retrieves_a_dropped_stream_from_the_store(gw, plain, mock):
    g, key = gw
    test_id = uuid.uuid4().hex
    got, n = start_and_drop(g, key, test_id)
    assert got == plain[:len(got)]
    rest = sdk_retrieve(g, key, test_id, n)
    expected = [json.loads(e.split(b"\ndata: ", 1)[1]) for e in events(after(plain, n))]
    assert rest == expected
    assert [e["sequence_number"] for e in rest] == list(range(n + 1, n + 1 + len(rest)))
    assert rest[-1]["type"] == "response.completed"
    # At the wire: the upstream's bytes exactly, no `id:` lines; never a GET upstream.
    r = wire_retrieve(g, key, test_id, n)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert got + r.content == plain
    assert upstream_gets(mock, test_id) == []
    assert mock.wait_ended(test_id=test_id)["ended"] == "complete"


def test_without_starting_after_the_whole_stream_and_past_the_end_nothing(gw, plain, mock):
    g, key = gw
    test_id = uuid.uuid4().hex
    start_and_drop(g, key, test_id, 2)
    whole = requests.get(g.base + "/responses/%s?stream=true" % client_id(g, key),
                         headers=hh.auth(key, **{"X-Mock-Test-Id": test_id}), timeout=30)
    assert whole.status_code == 200 and whole.content == plain
    last = sequence(events(plain)[-1])
    assert wire_retrieve(g, key, test_id, last).content == b""
    assert upstream_gets(mock, test_id) == []


def test_a_cancel_ends_the_retrieve_with_the_error_the_sdk_raises(gw, plain, mock):
    g, key = gw
    test_id = uuid.uuid4().hex
    partial = rh.Partial(g, key, path=PATH, body=BODY, test_id=test_id, speed="3")
    got, _ = rh.complete_events(partial.read_events(2))
    url = partial.header("X-Resume-Url")
    partial.cut(False)
    n = sequence(events(rh.strip_ids(got))[-1])
    client = openai.OpenAI(api_key=key, base_url=g.base, max_retries=0)
    stream = client.responses.retrieve(client_id(g, key), stream=True, starting_after=n,
                                       extra_headers={"X-Mock-Test-Id": test_id})
    seen = [next(stream).sequence_number]
    assert requests.delete(g.url + url, timeout=5).json()["cancelled"] is True
    with pytest.raises(openai.APIError, match="cancelled"):
        for event in stream:
            seen.append(event.sequence_number)
    assert seen == list(range(n + 1, n + 1 + len(seen)))
    assert mock.wait_ended(test_id=test_id)["ended"] == "client_closed"
    assert upstream_gets(mock, test_id) == []


def test_another_key_gets_404_and_the_upstream_never_sees_it(gw, plain, mock):
    g, key = gw
    test_id = uuid.uuid4().hex
    start_and_drop(g, key, test_id)
    other = servers.add_key(g.argv[g.argv.index("--keys-file") + 1], "other-" + uuid.uuid4().hex[:6])
    wait_until(lambda: requests.get(g.base + "/models", headers=hh.auth(other), timeout=5).status_code == 200,
               timeout=10)
    for query in ("?stream=true&starting_after=3", "?stream=true", ""):
        r = requests.get(g.base + "/responses/" + client_id(g, key) + query,
                         headers=hh.auth(other, **{"X-Mock-Test-Id": test_id}), timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", query
    assert upstream_gets(mock, test_id) == []
    # The same upstream object under the other key's own id: not this key's stream, so not from the
    # store; it is relayed upstream (the mock gives every story the same id).
    r = wire_retrieve(g, other, test_id, 3)
    assert r.status_code == 200 and sequence(events(r.content)[0]) == 4
    assert len(upstream_gets(mock, test_id)) == 1


def test_a_plain_stream_is_not_in_the_store(make_gateway, plain, mock):
    g, key = make_gateway(OPEN)  # a store of its own (the mock gives every story the same id)
    test_id = uuid.uuid4().hex
    got = rh.whole_stream(g, key, resumable=None, speed="0", path=PATH, body=BODY, test_id=test_id)[1]
    assert unbound(got) == unbound(plain) and client_id(g, key).encode() in got
    # Not resumable, so not in the store: the GET is relayed upstream, as before.
    r = wire_retrieve(g, key, test_id, 3)
    assert r.status_code == 200 and sequence(events(r.content)[0]) == 4  # the mock's own replay
    assert len(upstream_gets(mock, test_id)) == 1


@skip_unless_available()
def test_on_redis_the_sdk_retrieves_on_another_process(mock, redis_server, tmp_path, plain):
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    settings = dict(OPEN, stream_store="redis", redis_url=redis_server.url, resume_heartbeat=0.2)
    a = servers.start_gateway(folder, mock.base, settings)
    b = servers.start_gateway(folder, mock.base, settings)
    try:
        test_id = uuid.uuid4().hex
        got, n = start_and_drop(a, key, test_id)
        # `plain` came through another gateway (another secret): the same bytes, ids bound otherwise.
        mine = unbound(plain).replace(b'"%s"' % RESPONSE_ID.encode(), b'"%s"' % client_id(a, key).encode())
        rest = sdk_retrieve(b, key, test_id, n)
        assert rest == [json.loads(e.split(b"\ndata: ", 1)[1]) for e in events(after(mine, n))]
        r = wire_retrieve(b, key, test_id, n)
        assert got + r.content.replace(b": keep-alive\n", b"") == mine
        assert upstream_gets(mock, test_id) == []
    finally:
        a.stop()
        b.stop()
