"""The Redis token bucket over real time (Redis's own clock, no test clock): its key lives at least
as long as the bucket takes to refill, and a client that pauses gets back only what the refill
rate gives in that pause, not its whole burst. State and time are read from Redis itself (HMGET,
PTTL, TIME), so nothing depends on this process's timing."""

import asyncio
import math

import pytest
import redis

from tests.redis_server import skip_unless_available
from tornado_grok.ratelimit import Limits
from tornado_grok.health_redis import connect
from tornado_grok.ratelimit_redis import RedisLimiter

pytestmark = skip_unless_available()

RPM = 6  # one request back every 10 s: a pause of 2 s gives back 0.2 of one


def redis_now(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


def bucket(r: redis.Redis, lim: RedisLimiter, key: str) -> tuple[float, float, float, int]:
    """(cap, level, stamp, PTTL in ms) of a client key's requests bucket, as stored in Redis."""
    name = lim.keys(key)[0]
    cap, level, stamp = (float(v) for v in r.hmget(name, "cap", "level", "stamp"))
    return cap, level, stamp, r.pttl(name)


def refill_ms(cap: float, level: float) -> float:
    """How long an untouched bucket at `level` takes to be full again."""
    return (cap - level) * 60_000.0 / cap


def test_the_bucket_key_outlives_its_refill_time(redis_url):
    r = redis.Redis.from_url(redis_url)

    async def body():
        lim = RedisLimiter(connect(redis_url), redis_url)
        limits = Limits(requests_per_minute=RPM)
        for used in range(1, RPM + 1):
            assert (await lim.acquire("k", limits)).allowed
            cap, level, stamp, pttl = bucket(r, lim, "k")
            assert cap == RPM and RPM - used <= level < RPM - used + 0.1
            elapsed_ms = (redis_now(r) - stamp) * 1000.0  # since the script wrote the bucket
            # Forgetting the key early would hand the client a full bucket before it refilled.
            assert pttl >= refill_ms(cap, level) - elapsed_ms, (used, pttl, level)
            assert pttl <= math.ceil(refill_ms(cap, level)) + 1000  # and not kept much longer
        assert not (await lim.acquire("k", limits)).allowed
        await lim.close()

    asyncio.run(body())


def test_an_idle_client_gets_back_only_what_the_rate_refilled(redis_url):
    r = redis.Redis.from_url(redis_url)

    async def body():
        lim = RedisLimiter(connect(redis_url), redis_url)
        limits = Limits(requests_per_minute=RPM)
        for _ in range(RPM):
            assert (await lim.acquire("k", limits)).allowed
        _cap, empty, stamp, _pttl = bucket(r, lim, "k")
        # The client pauses 2 s, by Redis's clock (the limiter's clock): a wait with a deadline.
        deadline = stamp + 10.0
        while redis_now(r) < stamp + 2.0:
            assert redis_now(r) < deadline
            await asyncio.sleep(0.05)  # polling Redis's clock, not a fixed delay
        d = await lim.acquire("k", limits)
        after = redis_now(r)
        _cap, level, stamp2, pttl = bucket(r, lim, "k")
        # 2 s at 6/min gave back about 0.2 of a request: refused, and the bucket says so.
        assert not d.allowed and d.reason == "requests" and d.remaining_requests == 0
        assert 1 <= d.retry_after <= 10
        paused = stamp2 - stamp
        assert 2.0 <= paused <= after - stamp
        assert level == pytest.approx(empty + paused * RPM / 60.0, abs=1e-6)
        assert pttl > 0
        await lim.close()

    asyncio.run(body())
