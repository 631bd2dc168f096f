"""Readers of resumable streams: capped per stream and per key (429 with
Retry-After), one Redis XREAD loop per process however many readers follow a stream there, a full
Redis pool answered as such, keep-alives counted, and a Last-Event-ID past a finished stream's end
refused on every process."""

import asyncio
import contextlib
import os
import re
import socket
import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests import resumable_helpers as rh
from tests import servers
from tests.redis_server import skip_unless_available

SLOW = "10"  # the story at a tenth of its recorded pace: about 9 s, an event every 0.4 s


def live_stream(gateway, key: str) -> str:
    """Starts a slow resumable stream, reads its first two events, hangs up; its resume URL."""
    partial = rh.Partial(gateway, key, speed=SLOW)
    partial.read_events(2)
    url = partial.header("X-Resume-Url")
    partial.cut(False)
    return url


def open_reader(gateway, url: str, **headers):
    """A resume that stays open (its 200 head read): the caller closes it."""
    return requests.get(gateway.url + url, headers=dict({"Last-Event-ID": "0"}, **headers), stream=True, timeout=30)


def assert_refused(r, why: str) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "1"
    body = r.json()["error"]
    assert body["code"] == "too_many_readers" and why in body["message"], body


@pytest.fixture
def one_gateway(mock, tmp_path):
    """A gateway (memory store) and two keys, made before it starts: (gateway, key, other key)."""
    started = []

    def start(settings: dict):
        folder = str(tmp_path / uuid.uuid4().hex[:8])
        os.makedirs(folder)
        key = servers.add_key(os.path.join(folder, "keys.json"), "k")
        other = servers.add_key(os.path.join(folder, "keys.json"), "other")
        started.append(servers.start_gateway(folder, mock.base, dict(
            {"requests_per_minute": 0, "concurrent_requests": 0, "debug_endpoints": True}, **settings)))
        return started[-1], key, other

    yield start
    for g in started:
        g.stop()


def test_readers_are_capped_per_stream_and_per_key(one_gateway):
    g, key, other = one_gateway({"resume_readers_per_stream": 2, "resume_readers_per_key": 3})
    first, second = live_stream(g, key), live_stream(g, key)
    with contextlib.ExitStack() as held:
        for _ in range(2):
            r = held.enter_context(open_reader(g, first))
            assert r.status_code == 200
        assert_refused(open_reader(g, first), "resume_readers_per_stream")
        # The key's third reader, on its other stream: within both caps.
        third = held.enter_context(open_reader(g, second))
        assert third.status_code == 200
        # Its fourth, with the stream's token (no key sent): still the key's.
        assert_refused(open_reader(g, second), "resume_readers_per_key")
        # Another key is not held back by this one.
        theirs = live_stream(g, other)
        r = held.enter_context(open_reader(g, theirs))
        assert r.status_code == 200
        # One reader gone: its slot is free again.
        third.close()
        servers.wait_until(lambda: hh.state(g)["resumable"]["readers"] == 3, timeout=10)
        again = held.enter_context(open_reader(g, second))
        assert again.status_code == 200
    for url in (first, second, theirs):
        requests.delete(g.url + url, timeout=10)


def test_keepalives_of_a_resume_are_logged_and_counted(one_gateway):
    g, key, _ = one_gateway({"keepalive_interval": 0.1})
    url = live_stream(g, key)
    request_id = uuid.uuid4().hex
    r = requests.get(g.url + url, headers={"Last-Event-ID": "2", "X-Request-Id": request_id}, timeout=30)
    assert r.status_code == 200 and r.content.endswith(b"data: [DONE]\n\n")
    sent = r.content.count(b": keep-alive\n")
    assert sent >= 1
    line = hh.access_line(g, request_id)
    assert line["keepalives"] == sent
    metrics = requests.get(g.url + "/metrics", timeout=10).text
    counted = float(re.search(r"^tornado_grok_keepalives_total (\S+)$", metrics, re.M).group(1))
    assert counted >= sent


# -- with Redis: two gateway processes -------------------------------------------------------------

HEARTBEAT = 0.2


def redis_settings(redis_server, **extra) -> dict:
    return dict({"stream_store": "redis", "redis_url": redis_server.url, "resume_heartbeat": HEARTBEAT,
                 "resume_window": 5.0, "requests_per_minute": 0, "concurrent_requests": 0,
                 "debug_endpoints": True}, **extra)


def redis_clients(port: int) -> list:
    """CLIENT LIST of a redis-server, over a raw socket: one dict per client."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"CLIENT LIST\r\n")
        raw = b""
        while True:
            raw += s.recv(65536)
            head, _, rest = raw.partition(b"\r\n")
            if head.startswith(b"$") and len(rest) >= int(head[1:]) + 2:
                break
    text = rest[:int(head[1:])].decode()
    return [dict(field.split("=", 1) for field in line.split(" ") if "=" in field) for line in text.splitlines()]


@pytest.fixture
def redis_pair(mock, redis_server, tmp_path):
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k", "--concurrency", "1")
    other = servers.add_key(os.path.join(folder, "keys.json"), "other")
    conf = redis_settings(redis_server)  # resume_readers_per_stream: its default, 8
    a = servers.start_gateway(folder, mock.base, conf)
    b = servers.start_gateway(folder, mock.base, conf)
    yield a, b, key, other
    a.stop()
    b.stop()


@skip_unless_available()
def test_many_readers_on_another_process_share_one_redis_read(redis_pair, redis_server):
    a, b, key, other = redis_pair
    url = live_stream(a, key)  # a key limited to one concurrent request
    with contextlib.ExitStack() as held:
        readers = [held.enter_context(open_reader(b, url)) for _ in range(8)]
        assert [r.status_code for r in readers] == [200] * 8
        chunks = [r.iter_content(None) for r in readers]  # kept: a dropped iterator closes its connection
        for chunk in chunks:
            assert next(chunk).startswith(b"id: 1\n")  # each one is following
        assert_refused(open_reader(b, url), "resume_readers_per_stream")
        # One blocking XREAD on B's side for the eight of them (none on A's: it relays the stream).
        servers.wait_until(lambda: any(c.get("cmd") == "xread" for c in redis_clients(redis_server.port)),
                           timeout=10)
        assert sum(c.get("cmd") == "xread" for c in redis_clients(redis_server.port)) == 1
        # Another tenant's resume on B is answered in full meanwhile.
        head, body = rh.whole_stream(a, other, speed="0")
        theirs = rh.resume(b, rh.header(head, "X-Resume-Url"), 0)
        assert theirs.status_code == 200 and theirs.content == body
        rest = b"".join(chunks[0])
    assert rest.endswith(b"data: [DONE]\n\n") and b"error" not in rest


@skip_unless_available()
def test_a_last_event_id_past_the_end_is_400_on_every_process(redis_pair):
    a, b, key, other = redis_pair
    head, body = rh.whole_stream(a, other, speed="0")
    url = rh.header(head, "X-Resume-Url")
    events = body.count(b"\n\n")
    for g in (a, b):
        assert rh.resume(g, url, events).content == b""  # its last event: nothing after it
        r = rh.resume(g, url, events + 1)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_last_event_id", (g.port, r.text)
        assert "after the stream's last event (%d)" % events in r.json()["error"]["message"]
    # A running stream on another process: 400 once the stream has ended before that id (or Redis
    # still lacks it after 3 heartbeats and a write timeout); an id the owner has is answered 200.
    live = live_stream(a, key)
    r = rh.resume(b, live, 10 ** 9)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_last_event_id"
    assert rh.resume(b, live, 2).content.endswith(b"data: [DONE]\n\n")


@skip_unless_available()
def test_a_full_redis_pool_is_busy_not_unreachable(redis_url, tmp_path):
    from redis.exceptions import MaxConnectionsError

    from tornado_grok import config as config_module
    from tornado_grok.streamstore_redis import RedisStreamStore

    config = config_module.load(overrides={"stream_store": "redis", "redis_url": redis_url,
                                           "keys_file": str(tmp_path / "keys.json")}, environ={})

    async def main():
        store = RedisStreamStore(config)
        pool = store.redis.connection_pool
        taken = []
        try:
            with pytest.raises(MaxConnectionsError):
                while True:
                    taken.append(await pool.get_connection())
            with pytest.raises(Exception) as refused:
                await store.find("abc")
            return refused.value
        finally:
            for connection in taken:
                await pool.release(connection)
            await store.close()

    err = asyncio.run(main())
    assert (err.status, err.code, err.headers) == (503, "stream_store_busy", {"Retry-After": "1"})
    assert "unreachable" not in err.message
