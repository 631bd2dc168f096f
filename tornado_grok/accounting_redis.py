"""Usage accounting kept in Redis, so that every process and machine adds to the same totals.

Each client key's totals are one hash `tg:usage:{NAME}` (the fields of Accounting.FIELDS, added to
with HINCRBY), and the set `tg:usage:keys` lists the names. While Redis is unreachable the increments
wait in process memory and are written when it is back, so an outage loses no usage (unless the
process ends first).
"""

import collections

from .accounting import Accounting, count
from .errors import GatewayError
from .health_redis import RedisHealth, Unavailable
from .ratelimit_redis import PREFIX


class RedisAccounting:
    """The same record()/snapshot() as Accounting, stored in Redis."""

    FIELDS = Accounting.FIELDS
    shared = True

    def __init__(self, health: RedisHealth, prefix: str = PREFIX):
        self.client = health.client
        self.health = health.use()
        self.prefix = prefix
        self._pending: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self._flushing = False

    def _hash(self, key: str) -> str:
        return "%susage:{%s}" % (self.prefix, key)

    async def record(self, key: str, usage: dict | None, stream: bool, ended: str) -> None:
        count(self._pending[key], usage, stream, ended)
        if not self._flushing:
            await self.flush()
        # else the flush under way writes this too, batched with whatever else arrived meanwhile

    async def flush(self) -> None:
        """Writes the pending increments, one MULTI/EXEC per batch; keeps them while Redis is down."""
        self._flushing = True
        try:
            while self._pending and not self.health.down:
                pending, self._pending = self._pending, collections.defaultdict(collections.Counter)
                try:
                    async with self.health.call(), self.client.pipeline(transaction=True) as pipe:
                        for key, counts in pending.items():
                            pipe.sadd(self.prefix + "usage:keys", key)
                            for field, n in counts.items():
                                if n:
                                    pipe.hincrby(self._hash(key), field, n)
                        await pipe.execute()
                except Unavailable:
                    for key, counts in pending.items():
                        self._pending[key].update(counts)
        finally:
            self._flushing = False

    async def claim(self, token: str, ttl: float) -> bool:
        """Accounting.claim across every process: SET NX with an expiry. While Redis is unreachable
        it says True (the usage is charged: at worst twice, never lost)."""
        try:
            async with self.health.call():
                return bool(await self.client.set(self.prefix + "claimed:" + token, 1, nx=True, ex=int(ttl)))
        except Unavailable:
            return True

    async def snapshot(self) -> dict:
        if not self.health.down and not self._flushing:
            await self.flush()
        try:
            async with self.health.call():
                names = sorted(await self.client.smembers(self.prefix + "usage:keys"))
            async with self.health.call(), self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self._hash(name))
                rows = await pipe.execute()
        except Unavailable:
            raise GatewayError(503, "the usage store (Redis) is unreachable; retry shortly",
                               code="usage_unavailable", headers={"Retry-After": "1"})
        return {name: {f: int(row.get(f, 0)) for f in self.FIELDS} for name, row in zip(names, rows)}

    async def close(self) -> None:
        if self._pending and not self.health.down and not self._flushing:
            await self.flush()
        await self.health.done()
