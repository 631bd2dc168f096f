"""The Redis connections of the Redis stream store (streamstore_redis.py): redis-py's blocking pool,
the clients made from it, and what a reader is told when a command fails. No command holds a pooled
connection for longer than WRITE_TIMEOUT (the live tails have a connection of their own), so the
pool (POOL_SIZE) is not used up by readers; a burst of commands waits up to WRITE_TIMEOUT for a free
connection, and if the pool is full all the same, the answer says so (`stream_store_busy`), not
that Redis is unreachable.
"""

import asyncio

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, MaxConnectionsError

from .errors import GatewayError
from .streamtail_redis import store_unavailable

WRITE_TIMEOUT = 1.0  # seconds for one pipeline of writes: a late batch is still worth writing
POOL_SIZE = 100  # connections of the shared client (redis-py's default, stated)


class Pool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool: a burst of commands waits (up to WRITE_TIMEOUT) for a free
    connection instead of failing at once; past that, MaxConnectionsError (the pool is full, which
    is not Redis being unreachable)."""

    async def get_connection(self, *args, **kwargs):
        try:
            return await super().get_connection(*args, **kwargs)
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError) and str(exc) == "No connection available.":
                raise MaxConnectionsError("all %d connections in use" % self.max_connections) from None
            raise


def connect(url: str, timeout: float, single: bool = False) -> aioredis.Redis:
    """A client of raw bytes whose commands answer within `timeout` seconds; `single`: one
    connection of its own (the live tails' XREAD BLOCK)."""
    pool = Pool.from_url(url, socket_connect_timeout=WRITE_TIMEOUT, socket_timeout=timeout,
                         max_connections=1 if single else POOL_SIZE, timeout=WRITE_TIMEOUT,
                         retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
    return aioredis.Redis(connection_pool=pool, single_connection_client=single)


def store_error(exc) -> GatewayError:
    """What a reader is told when a Redis command failed: busy (the pool is full), or unreachable."""
    if isinstance(exc, MaxConnectionsError):
        return GatewayError(503, "the stream store's connections are all in use; resume again shortly",
                            code="stream_store_busy", headers={"Retry-After": "1"})
    return store_unavailable()
