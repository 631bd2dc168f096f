"""Usage totals in Redis (tornado_grok/accounting_redis.py): shared, and kept through an outage."""

import asyncio

import pytest

from tests.redis_server import RedisServer, skip_unless_available, wait_up
from tornado_grok import health_redis
from tornado_grok.accounting_redis import RedisAccounting
from tornado_grok.errors import GatewayError
from tornado_grok.health_redis import RedisHealth, connect

pytestmark = skip_unless_available()

USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30,
         "completion_tokens_details": {"reasoning_tokens": 7}}


def accounting(url: str) -> RedisAccounting:
    return RedisAccounting(RedisHealth(connect(url), url, "fail_open"))


def test_two_writers_one_total_and_outage_buffering(monkeypatch):
    monkeypatch.setattr(health_redis, "PROBE_INTERVAL", 0.05)
    server = RedisServer.start()

    async def body():
        a, b = accounting(server.url), accounting(server.url)
        await a.record("alice", USAGE, True, "completed")
        await b.record("alice", {"prompt_tokens": 5, "completion_tokens": 1}, True, "client_gone")
        await b.record("bob", None, False, "rejected")
        expected = {
            "alice": {"requests": 2, "prompt_tokens": 15, "completion_tokens": 21, "reasoning_tokens": 7,
                      "streams": 2, "abandoned_streams": 1, "errors": 0, "estimated_requests": 0, "estimated_tokens": 0},
            "bob": {"requests": 1, "prompt_tokens": 0, "completion_tokens": 0, "reasoning_tokens": 0,
                    "streams": 0, "abandoned_streams": 0, "errors": 1, "estimated_requests": 0, "estimated_tokens": 0},
        }
        assert await a.snapshot() == expected
        server.stop()
        await a.record("alice", USAGE, False, "completed")  # kept in memory while Redis is down
        with pytest.raises(GatewayError) as e:
            await a.snapshot()
        assert e.value.status == 503
        server.restart()  # empty: only what was written after the restart is there
        await wait_up(a.health)
        await a.flush()
        snap = await b.snapshot()
        assert snap["alice"]["requests"] == 1 and snap["alice"]["prompt_tokens"] == 10
        await a.close()
        await b.close()

    try:
        asyncio.run(body())
    finally:
        server.stop()
