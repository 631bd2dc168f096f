"""The Redis limiter's Lua scripts against a real redis-server, on a fake clock.

The clock is passed to the scripts (instead of Redis TIME) so every figure is exact: the same
sequence of calls must give the same decisions and headers as MemoryLimiter, leases must expire
and be renewed as documented, and an outage must follow redis_failure_mode.
"""

import asyncio

import pytest

from tests.redis_server import RedisServer, skip_unless_available, wait_up
from tornado_grok import health_redis
from tornado_grok.errors import GatewayError
from tornado_grok.ratelimit import Limits, MemoryLimiter
from tornado_grok.health_redis import connect
from tornado_grok.ratelimit_redis import RedisLimiter

pytestmark = skip_unless_available()


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro_fn):
    """Runs an async test body on a fresh event loop (the limiter's client belongs to that loop)."""
    return asyncio.run(coro_fn())


def limiter(url: str, clock: Clock, **kwargs) -> RedisLimiter:
    kwargs.setdefault("lease_seconds", 10.0)
    return RedisLimiter(connect(url), url, clock=clock, **kwargs)


def fields(d) -> tuple:
    return (d.allowed, d.reason, d.retry_after, d.remaining_requests, round(d.reset_requests, 6),
            d.remaining_tokens, round(d.reset_tokens, 6), d.headers())


def test_same_decisions_as_memory_limiter(redis_url):
    """A scripted mix of admissions, releases, token charges and clock steps, run through both."""
    limits = Limits(requests_per_minute=4, concurrent_requests=2, tokens_per_minute=100)
    steps = [("acquire",), ("acquire",), ("acquire",), ("release", 0), ("acquire",), ("release", 1),
             ("release", 3), ("acquire",), ("release", 4), ("acquire",), ("tick", 15.0), ("acquire",),
             ("release", 6), ("tokens", 150), ("tick", 15.0), ("acquire",), ("tick", 60.0), ("acquire",),
             ("release", 8), ("tokens", 20), ("tick", 0.5), ("acquire",), ("tick", 120.0), ("acquire",)]

    async def trace(lim, clock):
        out, held = [], []
        for step in steps:
            if step[0] == "acquire":
                d = await lim.acquire("alice", limits)
                out.append(fields(d))
                held.append(d if d.allowed else None)
            elif step[0] == "release":
                d = held[step[1]] if step[1] < len(held) else None
                if d is not None:
                    await lim.release(d)
            elif step[0] == "tokens":
                await lim.add_tokens("alice", limits, step[1])
            else:
                clock.now += step[1]
        return out

    async def body():
        mem_clock, redis_clock = Clock(), Clock()
        memory = await trace(MemoryLimiter(clock=mem_clock), mem_clock)
        red = limiter(redis_url, redis_clock, lease_seconds=3600)  # no lease expires during the trace
        try:
            shared = await trace(red, redis_clock)
        finally:
            await red.close()
        assert shared == memory
        assert [f[1] for f in memory] == ["", "", "concurrency", "", "", "requests", "", "tokens", "", "", ""]

    run(body)


def test_bucket_refills_continuously_and_reports_reset(redis_url):
    async def body():
        clock = Clock()
        lim = limiter(redis_url, clock)
        limits = Limits(requests_per_minute=60)
        for _ in range(60):
            assert (await lim.acquire("k", limits)).allowed
        refused = await lim.acquire("k", limits)
        assert (refused.allowed, refused.reason, refused.retry_after) == (False, "requests", 1)
        assert refused.headers() == {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                                     "x-ratelimit-reset-requests": "1m0s"}
        clock.now += 1.0  # one request per second comes back
        ok = await lim.acquire("k", limits)
        assert ok.allowed and ok.remaining_requests == 0
        clock.now += 30.0
        assert (await lim.acquire("k", limits)).remaining_requests == 29
        await lim.close()

    run(body)


def test_limit_change_starts_a_full_bucket(redis_url):
    async def body():
        clock = Clock()
        lim = limiter(redis_url, clock)
        for _ in range(3):
            await lim.acquire("k", Limits(requests_per_minute=3))
        assert not (await lim.acquire("k", Limits(requests_per_minute=3))).allowed
        d = await lim.acquire("k", Limits(requests_per_minute=5))
        assert d.allowed and d.remaining_requests == 4
        await lim.close()

    run(body)


def test_tokens_overdraw_delays_the_next_request(redis_url):
    async def body():
        clock = Clock()
        lim = limiter(redis_url, clock)
        limits = Limits(tokens_per_minute=600)
        assert (await lim.acquire("k", limits)).allowed
        await lim.add_tokens("k", limits, 900)  # 300 below zero: 30 s until one token is back
        refused = await lim.acquire("k", limits)
        assert (refused.allowed, refused.reason, refused.retry_after) == (False, "tokens", 31)
        assert refused.headers()["x-ratelimit-remaining-tokens"] == "0"
        clock.now += 31
        assert (await lim.acquire("k", limits)).allowed
        await lim.close()

    run(body)


def test_leases_expire_unless_renewed(redis_url):
    """A lease whose process stops renewing it frees its slot lease_seconds later, not before."""

    async def body():
        clock = Clock()
        limits = Limits(concurrent_requests=1)
        dead = limiter(redis_url, clock, lease_seconds=5)
        alive = limiter(redis_url, clock, lease_seconds=5)
        held = await dead.acquire("k", limits)
        assert held.allowed
        clock.now += 4.9
        assert (await alive.acquire("k", limits)).reason == "concurrency"
        clock.now += 0.2
        taken = await alive.acquire("k", limits)
        assert taken.allowed
        # renewal keeps it: ten lease periods later it is still held
        for _ in range(10):
            clock.now += 4
            await alive.renew()
            assert (await dead.acquire("k", limits)).reason == "concurrency"
        await alive.release(taken)
        assert (await dead.acquire("k", limits)).allowed
        await dead.close()
        await alive.close()

    run(body)


def test_renewal_does_not_bring_back_a_released_lease(redis_url):
    async def body():
        clock = Clock()
        lim = limiter(redis_url, clock)
        limits = Limits(concurrent_requests=1)
        d = await lim.acquire("k", limits)
        member = d.lease.member
        await lim.release(d)
        lim._held[member] = lim.keys("k")[2]  # as if a renewal had taken its list just before
        await lim.renew()
        assert await lim.client.zcard(lim.keys("k")[2]) == 0
        lim._held.clear()
        await lim.close()

    run(body)


def test_unlimited_key_touches_nothing(redis_url):
    async def body():
        lim = limiter(redis_url, Clock())
        d = await lim.acquire("free", Limits())
        assert d.allowed and d.headers() == {}
        await lim.release(d)
        assert await lim.client.dbsize() == 0
        assert lim.inflight() == 0
        await lim.close()

    run(body)


def test_real_redis_clock(redis_url):
    """Without a test clock the scripts read Redis TIME; buckets still count exactly."""

    async def body():
        lim = RedisLimiter(connect(redis_url), redis_url, lease_seconds=10)
        limits = Limits(requests_per_minute=5, concurrent_requests=3)
        decisions = [await lim.acquire("k", limits) for _ in range(7)]
        assert [d.allowed for d in decisions] == [True, True, True, False, False, False, False]
        assert [d.reason for d in decisions[3:]] == ["concurrency"] * 4
        assert lim.inflight() == 3
        for d in decisions:
            if d.allowed:
                await lim.release(d)
        assert lim.inflight() == 0
        assert (await lim.acquire("k", limits)).remaining_requests == 1
        await lim.close()

    run(body)


def test_outage_fail_open_then_recovery(caplog, monkeypatch):
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 0.05)
    server = RedisServer.start()

    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_open", lease_seconds=10)
        limits = Limits(requests_per_minute=2, concurrent_requests=5)
        before = [await lim.acquire("k", limits) for _ in range(2)]
        assert all(d.allowed for d in before)
        assert not (await lim.acquire("k", limits)).allowed
        server.stop()
        local = [await lim.acquire("k", limits) for _ in range(3)]
        # admitted under this process's own limits, which had not been used: 2 of 3
        assert [d.allowed for d in local] == [True, True, False]
        assert local[0].headers()["x-ratelimit-remaining-requests"] == "1"
        for d in before + local[:2]:
            await lim.release(d)  # the Redis leases cannot be given back now: they will expire
        assert lim.inflight() == 0
        assert lim.health.down
        server.restart()
        await wait_up(lim.health)  # the background PING notices
        d = await lim.acquire("k", limits)
        assert d.allowed and d.remaining_requests == 1  # a fresh server: a full shared bucket again
        await lim.release(d)
        await lim.close()

    try:
        with caplog.at_level("WARNING", logger="tornado_grok.ratelimit"):
            run(body)
    finally:
        server.stop()
    loud = [r for r in caplog.records if "REDIS UNREACHABLE" in r.getMessage()]
    assert len(loud) == 1 and loud[0].levelname == "ERROR"  # once per outage, not per request
    assert "fail_open" in loud[0].getMessage()
    assert sum("reachable again" in r.getMessage() for r in caplog.records) == 1


def test_outage_fail_closed_is_503_with_retry_after(monkeypatch):
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 0.05)
    server = RedisServer.start()

    async def body():
        lim = RedisLimiter(connect(server.url), server.url, "fail_closed", lease_seconds=10)
        limits = Limits(requests_per_minute=100)
        assert (await lim.acquire("k", limits)).allowed
        server.stop()
        for _ in range(3):
            with pytest.raises(GatewayError) as e:
                await lim.acquire("k", limits)
            assert e.value.status == 503 and e.value.headers == {"Retry-After": "1"}
        server.restart()
        await wait_up(lim.health)
        assert (await lim.acquire("k", limits)).allowed
        await lim.close()

    try:
        run(body)
    finally:
        server.stop()


def test_unreachable_from_the_start_fails_fast():
    """A Redis that never answered: the first request already follows the failure mode."""
    from tests.redis_server import free_port

    url = "redis://127.0.0.1:%d/0" % free_port()

    async def body():
        lim = RedisLimiter(connect(url), url, "fail_closed")
        with pytest.raises(GatewayError):
            await lim.acquire("k", Limits(requests_per_minute=1))
        await lim.close()

    run(body)
