"""A Redis that stalls in the middle of a resumable stream: redis-server SIGSTOPped
while gateway A relays a stream to its own client and gateway B follows it for another client.

While Redis is stopped, B's reader gets keep-alives, and A's client gets the whole stream (A needs
no Redis for it). Once Redis answers again, B's reader gets every event and A's `[DONE]` (not
"the gateway process relaying this stream stopped": A's heartbeat key expired by Redis's clock
during the stall, which says nothing about A), and a later resume on B replays the whole stream
(A's writes that failed during the stall were sent again)."""

import os
import signal

import pytest

from tests import hardening_helpers as hh
from tests import resumable_helpers as rh
from tests import servers
from tests.redis_server import RedisServer, skip_unless_available

pytestmark = skip_unless_available()

HEARTBEAT = 0.25
KEEPALIVE = 0.2


@pytest.fixture
def stalled(mock, tmp_path):
    """A redis-server of this test (it gets SIGSTOPped), gateways A and B on it, and a key."""
    server = RedisServer.start()
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    conf = {"stream_store": "redis", "redis_url": server.url, "resume_heartbeat": HEARTBEAT,
            "keepalive_interval": KEEPALIVE, "resume_window": 30.0, "requests_per_minute": 0,
            "concurrent_requests": 0}
    a = servers.start_gateway(folder, mock.base, conf)
    b = servers.start_gateway(folder, mock.base, conf)
    yield server, a, b, key
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)
    a.stop()
    b.stop()
    server.stop()


def test_a_reader_elsewhere_waits_out_a_redis_stall_and_gets_every_event(stalled):
    server, a, b, key = stalled
    story = rh.whole_stream(a, key, speed="0")[1]
    # A's own client: the first two events, the connection kept open.
    partial = rh.Partial(a, key, speed="4")
    got, last = rh.complete_events(partial.read_events(2))
    url = partial.header("X-Resume-Url")
    # B's client follows the stream from there.
    reader = hh.connect(b, timeout=30)
    reader.sendall(hh.raw_request("GET", url, {"Last-Event-ID": str(last)}))
    seen = hh.read_until(reader, b"id: %d\n" % (last + 1))  # it is past its catch-up, following live
    assert seen.startswith(b"HTTP/1.1 200")

    os.kill(server.proc.pid, signal.SIGSTOP)
    # A relays to its own client to the end without Redis; its writes to Redis fail meanwhile.
    whole = partial.read_events(10 ** 6)
    assert whole.replace(b": keep-alive\n", b"") == story
    servers.wait_until(lambda: "stream store: Redis at" in a.stderr, timeout=10)
    # B's client hears keep-alives, not silence, while Redis is stopped (well past A's heartbeat TTL).
    stopped_at = len(seen)
    seen = hh.read_until(reader, b": keep-alive\n", seen, timeout=20,
                         count=seen.count(b": keep-alive\n") + int(2 / KEEPALIVE))
    assert seen.count(b": keep-alive\n", stopped_at) >= int(2 / KEEPALIVE)
    os.kill(server.proc.pid, signal.SIGCONT)

    seen = hh.read_until(reader, b"0\r\n\r\n", seen, timeout=30)
    reader.close()
    head, body, complete = hh.dechunk(seen)
    assert complete
    assert (got + body).replace(b": keep-alive\n", b"") == story
    assert b"stopped" not in body and body.endswith(b"data: [DONE]\n\n")
    # Every event reached Redis in the end: a resume on B now replays the stream whole.
    servers.wait_until(lambda: rh.resume(b, url, 0).content == story, timeout=10)


def test_an_owner_that_outlived_the_stall_is_not_called_stopped(stalled):
    """The owner's heartbeat key expires by Redis's clock while Redis is stopped; A (frozen too,
    so that it cannot refresh the key before B looks) is thawed only once B has looked at it after
    Redis came back. B's reader waits for A's next heartbeat instead of saying A stopped."""
    import redis

    server, a, b, key = stalled
    story = rh.whole_stream(a, key, speed="0")[1]
    partial = rh.Partial(a, key, speed="10")
    got, last = rh.complete_events(partial.read_events(2))
    url = partial.header("X-Resume-Url")
    stream_id = url.split("/")[-1].split("?")[0]
    partial.cut(False)
    reader = hh.connect(b, timeout=30)
    reader.sendall(hh.raw_request("GET", url, {"Last-Event-ID": str(last)}))
    seen = hh.read_until(reader, b"id: %d\n" % (last + 1))

    a.signal(signal.SIGSTOP)
    os.kill(server.proc.pid, signal.SIGSTOP)
    # Redis stays stopped past the owner key's TTL (3 heartbeats), the reader flag's (2), and the
    # patience of a reader with an owner it cannot see (3 heartbeats + 1 s: streamtail_redis.OWNER_GRACE).
    seen = hh.read_until(reader, b": keep-alive\n", seen, timeout=20,
                         count=seen.count(b": keep-alive\n") + int((3 * HEARTBEAT + 2) / KEEPALIVE))
    os.kill(server.proc.pid, signal.SIGCONT)
    client = redis.Redis(port=server.port)
    try:
        # B looked at the stream after Redis came back (its check sets the reader flag again), and
        # found no heartbeat of A's there.
        servers.wait_until(lambda: client.exists("tg:rs:%s:r" % stream_id), timeout=10)
        assert not client.exists("tg:rs:%s:o" % stream_id)
    finally:
        a.signal(signal.SIGCONT)
        client.close()

    seen = hh.read_until(reader, b"0\r\n\r\n", seen, timeout=30)
    reader.close()
    head, body, complete = hh.dechunk(seen)
    assert b"stopped" not in body, body[-300:]
    assert (got + body).replace(b": keep-alive\n", b"") == story
