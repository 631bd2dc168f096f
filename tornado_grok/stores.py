"""The stores the configuration chooses: rate limits, usage accounting and resumable streams, each
in process memory or in Redis. redis-py (and the Redis modules) are imported only for a Redis store:
they are about a third of the gateway's start-up imports, which every process pays otherwise."""

from .accounting import Accounting
from .ratelimit import MemoryLimiter
from .streamstore_memory import MemoryStreamStore


def make_limiter(config):
    """The limiter config.ratelimit_backend asks for: MemoryLimiter, or RedisLimiter on config.redis_url."""
    if config.ratelimit_backend != "redis":
        return MemoryLimiter()
    from .health_redis import connect
    from .ratelimit_redis import RedisLimiter
    return RedisLimiter(connect(config.redis_url, config.redis_timeout), config.redis_url,
                        config.redis_failure_mode, config.lease_seconds, timeout=config.redis_timeout)


def make_accounting(config, limiter=None):
    """Accounting in Redis when the limiter is (sharing its connection and outage state), else in memory."""
    if config.ratelimit_backend != "redis":
        return Accounting()
    from .accounting_redis import RedisAccounting
    from .health_redis import RedisHealth, connect
    from .ratelimit_redis import RedisLimiter
    if isinstance(limiter, RedisLimiter):
        return RedisAccounting(limiter.health)
    return RedisAccounting(RedisHealth(connect(config.redis_url, config.redis_timeout), config.redis_url,
                                       config.redis_failure_mode, timeout=config.redis_timeout))


def make_stream_store(config):
    """The store config.stream_store asks for."""
    if config.stream_store != "redis":
        return MemoryStreamStore(config)
    from .streamstore_redis import RedisStreamStore
    return RedisStreamStore(config)
