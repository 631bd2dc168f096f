"""The Redis limiter's Python side, against a real redis-server: the call deadline that tells a hung
Redis from a busy event loop, the circuit breaker's counts, the background probe and lease renewal,
a shutdown that hands every connection back, and a Redis password that never reaches a log line.

(The Lua scripts' decisions are in test_ratelimit_lua.py; a hung Redis behind a gateway in
test_ops_redis_hang.py.)
"""

import asyncio
import signal
import time

import pytest
import redis

from tests.redis_server import RedisServer, free_port, skip_unless_available
from tornado_grok import health_redis
from tornado_grok.accounting_redis import RedisAccounting
from tornado_grok.config import Config
from tornado_grok.ratelimit import Limits, MemoryLimiter
from tornado_grok.health_redis import RedisHealth, Unavailable, connect, patient_timeout, safe_url
from tornado_grok.ratelimit_redis import RedisLimiter
from tornado_grok.stores import make_limiter

pytestmark = skip_unless_available()


@pytest.fixture
def server():
    s = RedisServer.start()
    yield s
    s.stop()


def observer(server) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def wait_for_clients(server, n: int, timeout: float = 10.0) -> int:
    """Polls (with a deadline) until Redis counts n client connections (the observer's included):
    Redis notices a closed connection on its next turn, not at once."""
    obs = observer(server)
    deadline = time.monotonic() + timeout
    try:
        while True:
            count = len(obs.client_list())
            if count == n or time.monotonic() > deadline:
                return count
            time.sleep(0.01)  # polling Redis's own count, not a fixed delay
    finally:
        obs.close()


def other_tasks() -> list:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


@pytest.mark.parametrize("url, shown", [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
    ("rediss://user:p@ss@cache.internal:6380/2", "rediss://***@cache.internal:6380/2"),
    ("unix:///run/redis.sock", "unix:///run/redis.sock"),
])
def test_safe_url_hides_the_password(url, shown):
    assert safe_url(url) == shown


def test_an_outage_log_line_names_the_redis_without_its_password(caplog):
    url = "redis://:s3cret-pass@127.0.0.1:%d/0" % free_port()  # nothing listens there

    async def body():
        lim = RedisLimiter(connect(url), url, "fail_open")
        assert (await lim.acquire("k", Limits(requests_per_minute=5))).allowed  # fail_open: locally
        await lim.close()

    with caplog.at_level("WARNING", logger="tornado_grok.ratelimit"):
        asyncio.run(body())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "REDIS UNREACHABLE at redis://***@127.0.0.1:" in text
    assert "s3cret" not in text


def test_a_deadline_on_an_idle_loop_gives_up_after_its_timeout():
    async def body():
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            async with patient_timeout(0.3):
                await asyncio.sleep(20)  # a Redis that never answers
        return time.monotonic() - began

    took = asyncio.run(body())
    # 0.3 s on an idle loop; on a busy machine each deadline timer that fires late adds 0.3 s, up to
    # PATIENCE (8) of them (2.4 s; 2.1 s was seen under the four-worker suite), never the 20 s.
    assert 0.3 <= took < 10


def test_a_deadline_waits_for_a_busy_loop_up_to_its_patience():
    """A loop kept busy past the deadline (a burst of requests) may not have read an answer that had
    arrived: that is no outage, up to PATIENCE timeouts since the call began."""
    async def busy_for(seconds: float) -> None:
        async with patient_timeout(0.1):
            time.sleep(seconds)  # the event loop is busy: the deadline's timer fires late
            await asyncio.sleep(0.01)  # the answer was there; reading it takes a loop turn

    asyncio.run(busy_for(0.3))  # late, within 8 x 0.1 s of the start: no timeout
    with pytest.raises(TimeoutError):
        asyncio.run(busy_for(1.0))  # past the patience: given up on

    async def busy_then_silent() -> float:
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            async with patient_timeout(0.1):
                time.sleep(0.3)  # the deadline is extended by one timeout ...
                await asyncio.sleep(20)  # ... and still kept when the answer never comes
        return time.monotonic() - began

    assert asyncio.run(busy_then_silent()) < 10


def test_a_call_that_waited_for_a_connection_is_not_sent_once_redis_is_down(server, monkeypatch):
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 60)  # no probe PING within this test

    async def body():
        health = RedisHealth(connect(server.url, 5.0, max_connections=1), server.url, "fail_open",
                             max_connections=1, timeout=5.0).use()
        gate = asyncio.Event()

        async def holder():  # holds the only connection while Redis goes away
            async with health.call() as client:
                await gate.wait()
                await client.ping()

        async def queued():
            async with health.call() as client:
                await client.ping()

        first = asyncio.ensure_future(holder())
        await asyncio.sleep(0)  # let it take the slot
        second = asyncio.ensure_future(queued())
        await asyncio.sleep(0)  # let it queue for the slot
        server.stop()
        gate.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert [type(r) for r in results] == [Unavailable, Unavailable]
        assert health.state() == {"down": True, "outages": 1, "calls": 1, "skipped": 1}
        await health.done()

    asyncio.run(body())


def test_while_redis_is_down_the_probe_pings_at_its_interval_and_closes_the_breaker(server, monkeypatch, caplog):
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 0.05)
    began = time.monotonic()

    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open")
        limits = Limits(requests_per_minute=100)
        assert (await lim.acquire("k", limits)).allowed
        assert lim.state() == {"down": False, "outages": 0, "calls": 1, "skipped": 0, "failure_mode": "fail_open"}
        server.stop()
        assert (await lim.acquire("k", limits)).allowed  # this call fails, opens the breaker, admits locally
        assert (await lim.acquire("k", limits)).allowed  # decided without calling Redis
        calls = lim.health.calls
        assert (lim.health.down, lim.health.skipped) == (True, 1)
        began = time.monotonic()
        await asyncio.sleep(0.5)  # half a second of outage, the subject of this test
        probes = lim.health.calls - calls
        allowed = (time.monotonic() - began) / 0.05 + 2
        assert 2 <= probes <= allowed, "%d PINGs in a 0.5 s outage (one per 0.05 s expected)" % probes
        server.restart()
        deadline = time.monotonic() + 10
        while lim.health.down:
            assert time.monotonic() < deadline, "the probe did not see Redis come back"
            await asyncio.sleep(0.01)  # polling the breaker's flag, not a fixed delay
        assert (await lim.acquire("k", limits)).allowed
        assert lim.state()["outages"] == 1
        await lim.close()

    with caplog.at_level("WARNING", logger="tornado_grok.ratelimit"):
        asyncio.run(body())
    took = time.monotonic() - began
    back = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(back) == 1
    outage = float(back[0].split(" after ")[1].split(" s")[0])  # "... reachable again after 0.6 s: ..."
    assert 0.5 <= outage <= took + 0.1


def test_a_held_lease_is_renewed_in_the_background_until_released(server):
    """Real time, Redis's own clock: a slot held for 2.5 lease periods is still held; released, it is free."""
    async def body():
        lim = RedisLimiter(connect(server.url, 1.0), server.url, "fail_closed", lease_seconds=1.0, timeout=1.0)
        limits = Limits(concurrent_requests=1)
        held = await lim.acquire("k", limits)
        assert held.allowed
        await asyncio.sleep(2.5)  # past two lease periods: only renewal keeps the slot
        refused = await lim.acquire("k", limits)
        assert (refused.allowed, refused.reason) == (False, "concurrency")
        await lim.release(held)
        again = await lim.acquire("k", limits)
        assert again.allowed
        await lim.release(again)
        await lim.close()

    asyncio.run(body())


def test_close_gives_every_connection_back_and_leaves_no_task(server):
    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open", lease_seconds=30)
        d = await lim.acquire("k", Limits(concurrent_requests=2))
        assert d.allowed and other_tasks()  # the lease renewer runs while a lease is held
        assert wait_for_clients(server, 2) == 2
        await lim.close()
        assert other_tasks() == []

    asyncio.run(body())
    assert wait_for_clients(server, 1) == 1  # the observer alone


def test_close_during_an_outage_stops_the_probe(server, monkeypatch):
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 0.05)

    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open")
        await lim.acquire("k", Limits(requests_per_minute=5))
        server.stop()
        await lim.acquire("k", Limits(requests_per_minute=5))
        assert lim.health.down and other_tasks()  # the probe
        await lim.close()
        assert other_tasks() == []

    asyncio.run(body())


def test_a_release_scheduled_just_before_close_still_reaches_redis(server):
    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open", lease_seconds=30)
        d = await lim.acquire("k", Limits(concurrent_requests=2))
        asyncio.ensure_future(lim.release(d))  # a request that finished as the gateway stops
        await lim.close()
        assert other_tasks() == []
        return lim.keys("k")[2]

    leases = asyncio.run(body())
    obs = observer(server)
    try:
        assert obs.zcard(leases) == 0
    finally:
        obs.close()


def test_the_shared_connection_stays_open_until_its_last_user_is_done(server):
    """The limiter and the usage accounting share one client: closing one keeps it for the other."""
    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open")
        acc = RedisAccounting(lim.health)
        assert (await lim.acquire("k", Limits(requests_per_minute=5))).allowed
        await lim.close()
        await acc.record("k", {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, True, "completed")
        assert not lim.health.down
        await acc.close()
        return acc._hash("k")

    usage = asyncio.run(body())
    obs = observer(server)
    try:
        assert obs.hget(usage, "completion_tokens") == "4"
    finally:
        obs.close()
    assert wait_for_clients(server, 1) == 1


def test_make_limiter_follows_the_config(server):
    assert type(make_limiter(Config())) is MemoryLimiter

    async def body():
        lim = make_limiter(Config(ratelimit_backend="redis", redis_url=server.url, redis_failure_mode="fail_closed",
                                  lease_seconds=12.0, redis_timeout=0.2))
        assert type(lim) is RedisLimiter
        assert (lim.failure_mode, lim.lease_seconds, lim.health.timeout) == ("fail_closed", 12.0, 0.2)
        assert (await lim.acquire("k", Limits(requests_per_minute=5))).allowed
        assert lim.state()["calls"] == 1
        await lim.close()

    asyncio.run(body())


def test_tokens_used_during_an_outage_are_charged_to_the_local_limits(server, monkeypatch):
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 60)

    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open")
        limits = Limits(tokens_per_minute=600)
        server.stop()
        d = await lim.acquire("k", limits)  # admitted by this process's own limits
        assert d.allowed and lim.health.down
        await lim.release(d)
        await lim.add_tokens("k", limits, 650)
        refused = await lim.acquire("k", limits)
        assert (refused.allowed, refused.reason) == (False, "tokens")
        await lim.close()

    asyncio.run(body())


def test_renewing_with_no_lease_held_calls_nothing(server):
    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open", lease_seconds=30)
        d = await lim.acquire("k", Limits(concurrent_requests=1))
        await lim.renew()  # one lease held: one call
        await lim.release(d)
        calls = lim.state()["calls"]
        await lim.renew()  # nothing held: no call
        assert lim.state()["calls"] == calls == 3
        await lim.close()

    asyncio.run(body())


def test_a_call_that_fails_during_shutdown_is_no_outage(server, caplog):
    """Redis hangs while the gateway stops, with a call in flight: the call gives up after its
    deadline, but a process on its way out neither logs an outage nor starts a probe."""
    async def body():
        lim = RedisLimiter(connect(server.url, 0.2), server.url, "fail_open", timeout=0.2)
        limits = Limits(requests_per_minute=100)
        assert (await lim.acquire("k", limits)).allowed
        server.proc.send_signal(signal.SIGSTOP)  # hung: connections stay open, nothing answers
        try:
            in_flight = asyncio.ensure_future(lim.acquire("k", limits))
            await asyncio.sleep(0)  # the call is sent
            await lim.close()
            assert (await in_flight).allowed  # decided locally (fail_open)
            assert other_tasks() == []
            assert not lim.health.down
        finally:
            server.proc.send_signal(signal.SIGCONT)

    with caplog.at_level("WARNING", logger="tornado_grok.ratelimit"):
        asyncio.run(body())
    assert not any("REDIS UNREACHABLE" in r.getMessage() for r in caplog.records)


def test_no_tokens_are_sent_without_a_token_limit_or_for_nothing(server):
    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open")
        limits = Limits(tokens_per_minute=100)
        await lim.add_tokens("k", Limits(requests_per_minute=5), 1000)
        await lim.add_tokens("k", limits, 0)
        await lim.add_tokens("k", limits, -5)
        assert lim.state()["calls"] == 0
        await lim.add_tokens("k", limits, 30)
        await lim.add_tokens("k", limits, 1)
        assert (await lim.acquire("k", limits)).remaining_tokens == 69
        await lim.close()

    asyncio.run(body())


def test_inflight_counts_leases_in_redis_and_leases_taken_locally_in_an_outage(server, monkeypatch):
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 60)

    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open", lease_seconds=30)
        limits = Limits(concurrent_requests=5)
        shared = await lim.acquire("k", limits)
        server.stop()
        local = await lim.acquire("k", limits)
        assert shared.allowed and local.allowed and lim.health.down
        assert lim.inflight() == 2
        await lim.release(local)
        assert lim.inflight() == 1
        await lim.release(shared)  # its Redis lease expires by itself; this process holds nothing
        assert lim.inflight() == 0
        await lim.close()

    asyncio.run(body())


def test_at_most_max_connections_calls_reach_a_hung_redis_and_the_rest_are_decided_locally(server, monkeypatch):
    """17 requests at once, Redis hung: 16 (MAX_CONNECTIONS) calls go out and time out; the 17th,
    waiting for a connection, is decided by the failure mode without calling Redis at all."""
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 60)

    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open")
        server.proc.send_signal(signal.SIGSTOP)
        try:
            decisions = await asyncio.gather(*(lim.acquire("k", Limits(requests_per_minute=100))
                                               for _ in range(health_redis.MAX_CONNECTIONS + 1)))
            assert all(d.allowed for d in decisions)
            assert lim.health.state() == {"down": True, "outages": 1, "calls": 16, "skipped": 1}
        finally:
            server.proc.send_signal(signal.SIGCONT)
        await lim.close()

    asyncio.run(body())
