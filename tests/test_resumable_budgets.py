"""Budgets of stored stream bytes: a key holds at most resume_key_bytes of resumable
streams' stored events, all keys together at most resume_total_bytes (per process; with Redis, in all
processes together). Past a budget a new stream is a plain stream that says so (`X-Resumable: false`,
`X-Resumable-Reason: <the setting>`), and a running stream that crosses it stops being resumable
(a resume is 410), as one over resume_max_bytes does. Another key keeps its own share.

The budgets are set in units of one story: the bytes a resumable story stream stores (its body at
speed 0, `id:` lines included, no keep-alives)."""

import os
import uuid

import pytest
import redis
import requests

from tests import resumable_helpers as rh
from tests import servers
from tests.redis_server import skip_unless_available

OPEN = {"requests_per_minute": 0, "concurrent_requests": 0}


@pytest.fixture(scope="module")
def story(gateway, key):
    """(the bytes one resumable story stores, the story as a plain stream)."""
    stored = rh.whole_stream(gateway, key, speed="0")[1]
    plain = rh.whole_stream(gateway, key, resumable=None, speed="0")[1]
    assert rh.strip_ids(stored) == plain
    return len(stored), plain


def add_key(g, name: str) -> str:
    return servers.add_key(g.argv[g.argv.index("--keys-file") + 1], name + "-" + uuid.uuid4().hex[:6])


def resumable(g, key) -> tuple:
    """One resumable story read whole: (its head, its body)."""
    return rh.whole_stream(g, key, speed="0", test_id=uuid.uuid4().hex)


def assert_refused(g, key, plain: bytes, setting: str) -> None:
    head, body = resumable(g, key)
    assert rh.header(head, "X-Resumable") == "false"
    assert rh.header(head, "X-Resumable-Reason") == setting
    with pytest.raises(KeyError):
        rh.header(head, "X-Resume-Url")
    assert body == plain  # a plain stream: the same bytes, no `id:` lines


def test_past_the_key_and_the_total_budget_a_new_stream_is_plain(make_gateway, story):
    size, plain = story
    g, a = make_gateway(dict(OPEN, resume_key_bytes=size, resume_total_bytes=2 * size))
    b, c = add_key(g, "b"), add_key(g, "c")
    head, body = resumable(g, a)  # exactly the key's budget: still resumable
    url = rh.header(head, "X-Resume-Url")
    assert rh.resume(g, url, 0).content == body
    assert_refused(g, a, plain, "resume_key_bytes")
    head, _ = resumable(g, b)  # another key has its own share; together they fill the total
    assert rh.header(head, "X-Resume-Url")
    assert_refused(g, c, plain, "resume_total_bytes")
    assert rh.resume(g, url, 0).content == body  # what is kept stays resumable


def test_a_stream_that_crosses_its_keys_budget_stops_being_resumable(make_gateway, story):
    size, plain = story
    g, a = make_gateway(dict(OPEN, resume_key_bytes=size + size // 2))
    first_head, first = resumable(g, a)
    head, body = resumable(g, a)  # admitted (half a story left), crosses the budget on its way
    assert rh.strip_ids(body) == plain  # its own reader got it all
    r = rh.resume(g, rh.header(head, "X-Resume-Url"), 0)
    assert r.status_code == 410 and "no longer resumable" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "stream_not_resumable"
    # Its stored events were released: the key holds the first story, under its budget.
    assert rh.resume(g, rh.header(first_head, "X-Resume-Url"), 0).content == first
    head, _ = resumable(g, a)
    assert rh.header(head, "X-Resume-Url")


@skip_unless_available()
def test_on_redis_the_budget_holds_across_processes(mock, redis_server, tmp_path, story):
    size, plain = story
    folder = str(tmp_path)
    a_key = servers.add_key(os.path.join(folder, "keys.json"), "a")
    b_key = servers.add_key(os.path.join(folder, "keys.json"), "b")
    settings = dict(OPEN, stream_store="redis", redis_url=redis_server.url, resume_heartbeat=0.2,
                    resume_key_bytes=size, resume_total_bytes=10 * size)
    a = servers.start_gateway(folder, mock.base, settings)
    b = servers.start_gateway(folder, mock.base, settings)
    try:
        head, body = resumable(a, a_key)
        # Read back on B to its end marker: A's writes of this stream (and its count) are in Redis.
        assert rh.resume(b, rh.header(head, "X-Resume-Url"), 0).content == body
        assert_refused(b, a_key, plain, "resume_key_bytes")  # the key's bytes are on A, the stream on B
        head, _ = resumable(b, b_key)
        assert rh.header(head, "X-Resume-Url")
    finally:
        a.stop()
        b.stop()


def test_a_crossed_budget_reopens_only_under_three_quarters(make_gateway, story):
    size, plain = story
    g, a = make_gateway(dict(OPEN, resume_key_bytes=size * 6 // 5))
    head, first = resumable(g, a)
    resumable(g, a)  # crosses the budget, and releases what it stored
    # The key holds 5/6 of its budget: under it, but over the three quarters at which it reopens.
    assert_refused(g, a, plain, "resume_key_bytes")
    assert rh.resume(g, rh.header(head, "X-Resume-Url"), 0).content == first


def test_an_unread_stream_that_crosses_its_budget_is_cancelled_upstream(make_gateway, story, mock):
    size, _ = story
    g, a = make_gateway(dict(OPEN, resume_key_bytes=size // 2))
    test_id = uuid.uuid4().hex
    partial = rh.Partial(g, a, test_id=test_id, speed="3")
    partial.read_events(1)
    url = partial.header("X-Resume-Url")
    partial.cut(False)  # nobody reads it: once it is not resumable, nobody can come back for it
    assert mock.wait_ended(test_id=test_id)["ended"] == "client_closed"
    r = rh.resume(g, url, 0)
    assert r.status_code == 410 and r.json()["error"]["code"] == "stream_not_resumable"


@skip_unless_available()
def test_on_redis_a_running_streams_events_expire_with_it(make_gateway, redis_url):
    """Should its process die mid-stream, the events (and their bytes in the budget) do not stay."""
    g, a = make_gateway(dict(OPEN, stream_store="redis", redis_url=redis_url, resume_heartbeat=0.2))
    partial = rh.Partial(g, a, test_id=uuid.uuid4().hex, speed="20")
    partial.read_events(2)
    stream_id = partial.header("X-Stream-Id")
    client = redis.Redis.from_url(redis_url)
    events = "tg:rs:%s:e" % stream_id
    servers.wait_until(lambda: client.exists(events), timeout=10)
    assert client.ttl(events) > 0
    partial.cut(False)
    assert requests.delete(g.url + partial.header("X-Resume-Url"), timeout=5).json()["cancelled"] is True
