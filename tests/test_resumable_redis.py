"""Resumable streams on Redis (stream_store = "redis"): two gateway processes on one
real redis-server, like two machines behind a load balancer. A stream started on A resumes on B,
byte for byte; cancel from B reaches A's upstream; a stream whose owner was SIGKILLed ends with an
error event on B; a reader on B keeps the stream alive past resume_window."""

import os
import signal
import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests import resumable_helpers as rh
from tests import servers
from tests.redis_server import skip_unless_available

pytestmark = skip_unless_available()

HEARTBEAT = 0.2


def settings(redis_server, **extra) -> dict:
    return dict({"stream_store": "redis", "redis_url": redis_server.url, "resume_heartbeat": HEARTBEAT,
                 "resume_window": 2.0, "requests_per_minute": 0, "concurrent_requests": 0,
                 "debug_endpoints": True}, **extra)


@pytest.fixture(scope="module")
def pair(mock, redis_server, tmp_path_factory):
    """Gateways A and B: one config, one keys file, one Redis; and the key."""
    folder = str(tmp_path_factory.mktemp("resumable_redis"))
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    a = servers.start_gateway(folder, mock.base, settings(redis_server))
    b = servers.start_gateway(folder, mock.base, settings(redis_server))
    yield a, b, key, folder
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def story(pair):
    a, b, key, _ = pair
    return rh.whole_stream(a, key, speed="0")[1]


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_a_stream_from_a_resumes_on_b_byte_for_byte(pair, story, mock, rst):
    a, b, key, _ = pair
    test_id = uuid.uuid4().hex
    partial = rh.Partial(a, key, test_id=test_id)
    got, last = rh.complete_events(partial.read_events(6))
    url = partial.header("X-Resume-Url")
    partial.cut(rst)
    r = rh.resume(b, url, last)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert got + r.content.replace(b": keep-alive\n", b"") == story
    assert (got + r.content).count(b"data: [DONE]") == 1
    assert mock.wait_ended(test_id=test_id)["ended"] == "complete"


def test_resume_on_b_with_the_key_and_after_completion(pair, story):
    a, b, key, _ = pair
    head, body = rh.whole_stream(a, key, speed="0")
    url = rh.header(head, "X-Resume-Url")
    path = url.split("?")[0]
    full = requests.get(b.url + path, headers={"Authorization": "Bearer " + key}, timeout=10)
    assert full.status_code == 200 and full.content == story
    after5 = rh.resume(b, url, 5).content
    assert after5 == story[story.index(b"id: 6\n"):]
    assert rh.resume(b, url, story.count(b"\n\n")).content == b""


def test_wrong_key_and_forged_token_on_b(pair):
    a, b, key, folder = pair
    head, body = rh.whole_stream(a, key, speed="0")
    url = rh.header(head, "X-Resume-Url")
    path, token = url.split("?token=")
    other = servers.add_key(os.path.join(folder, "keys.json"), "other-" + uuid.uuid4().hex[:6])
    servers.wait_until(lambda: requests.get(b.url + path, headers={"Authorization": "Bearer " + other},
                                            timeout=5).status_code != 401, timeout=10)
    wrong = requests.get(b.url + path, headers={"Authorization": "Bearer " + other}, timeout=5)
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "stream_not_found"
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert requests.get(b.url + path + "?token=" + forged, timeout=5).status_code == 404
    assert requests.delete(b.url + path + "?token=" + forged, timeout=5).status_code == 404
    assert requests.get(b.url + url, timeout=5).content == body


def test_cancel_from_b_stops_the_upstream_on_a(pair, mock):
    a, b, key, _ = pair
    test_id = uuid.uuid4().hex
    partial = rh.Partial(a, key, test_id=test_id, speed="4")
    got, last = rh.complete_events(partial.read_events(2))
    url = partial.header("X-Resume-Url")
    partial.cut(False)
    r = requests.delete(b.url + url, timeout=5)
    assert r.status_code == 200 and r.json()["cancelled"] is True
    assert mock.wait_ended(test_id=test_id, timeout=10)["ended"] == "client_closed"
    rest = rh.resume(b, url, last).content
    assert rest.endswith(b'data: {"error":"API error: the stream was cancelled (DELETE)"}\n\n')
    assert b"[DONE]" not in rest
    hh.wait_idle(a)


def test_a_reader_on_b_keeps_the_stream_past_resume_window(mock, redis_server, tmp_path, story):
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    conf = settings(redis_server, resume_window=0.5)
    a = servers.start_gateway(folder, mock.base, conf)
    b = servers.start_gateway(folder, mock.base, conf)
    try:
        test_id = uuid.uuid4().hex
        partial = rh.Partial(a, key, test_id=test_id, speed="4")
        got, last = rh.complete_events(partial.read_events(2))
        url = partial.header("X-Resume-Url")
        partial.cut(True)
        rest = rh.resume(b, url, last).content
        assert got + rest.replace(b": keep-alive\n", b"") == story
        assert mock.wait_ended(test_id=test_id)["ended"] == "complete"
        # Nobody reading: the window runs out and the upstream is cancelled.
        test_id = uuid.uuid4().hex
        partial = rh.Partial(a, key, test_id=test_id, speed="4")
        got, last = rh.complete_events(partial.read_events(2))
        url = partial.header("X-Resume-Url")
        partial.cut(False)
        assert mock.wait_ended(test_id=test_id, timeout=10)["ended"] == "client_closed"
        rest = rh.resume(b, url, last).content
        assert rest.endswith(b"no reader came back within resume_window (0.5s)\"}\n\n")
    finally:
        a.stop()
        b.stop()


def test_owner_killed_mid_stream_ends_the_reader_on_b_with_an_error(mock, redis_server, tmp_path, pair):
    _, b, _, _ = pair
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    a = servers.start_gateway(folder, mock.base, settings(redis_server))
    try:
        partial = rh.Partial(a, key, speed="10")
        got, last = rh.complete_events(partial.read_events(2))
        url = partial.header("X-Resume-Url")
        partial.cut(False)
        with requests.get(b.url + url, headers={"Last-Event-ID": str(last)}, stream=True, timeout=10) as r:
            assert r.status_code == 200
            a.signal(signal.SIGKILL)
            a.wait()
            rest = r.raw.read()  # the reader's end: within about 4 heartbeats (the timeout says 10 s)
    finally:
        a.stop()
    events = rest.replace(b": keep-alive\n", b"").split(b"\n\n")[:-1]
    assert events[-1].endswith(b'data: {"error":"API error: the gateway process relaying this stream stopped"}')
    assert b"[DONE]" not in rest
    ids = [int(e.split(b"\n")[0][4:]) for e in events]
    assert ids == list(range(last + 1, last + 1 + len(ids)))


def test_over_the_cap_a_resume_on_b_is_410(mock, redis_server, tmp_path, story):
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    a = servers.start_gateway(folder, mock.base, settings(redis_server, resume_max_bytes=2000))
    b = servers.start_gateway(folder, mock.base, settings(redis_server, resume_max_bytes=2000))
    try:
        head, body = rh.whole_stream(a, key, speed="0")
        assert body == story
        url = rh.header(head, "X-Resume-Url")
        # The owner marks it in Redis with its next batch of writes (within a few milliseconds).
        servers.wait_until(lambda: rh.resume(b, url, 0).status_code == 410, timeout=5)
        error = rh.resume(b, url, 0).json()["error"]
        assert "no longer resumable" in error["message"] and error["code"] == "stream_not_resumable"
    finally:
        a.stop()
        b.stop()


def test_with_redis_down_a_resumable_stream_still_streams_and_resumes_on_its_process(mock, tmp_path, story):
    from tests.redis_server import RedisServer
    server = RedisServer.start()
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    a = servers.start_gateway(folder, mock.base, settings(server))
    try:
        server.stop()
        head, body = rh.whole_stream(a, key, speed="0")
        assert body == story
        assert rh.resume(a, rh.header(head, "X-Resume-Url"), 0).content == story
        servers.wait_until(lambda: "stream store: Redis at" in a.stderr, timeout=5)
    finally:
        a.stop()
        server.stop()
