"""The rate limiter shared through Redis, so that N processes on M machines enforce one limit:
RedisLimiter keeps the contract of ratelimit.py (acquire / release / add_tokens) with the same
semantics as MemoryLimiter, but every decision is one Lua script (ratelimit_lua.py) run atomically
inside Redis, and every call goes through the circuit breaker of health_redis.py, whose failure mode
decides while Redis cannot be reached.
"""

import asyncio
import itertools
import secrets

import redis.asyncio as aioredis

from .errors import GatewayError
from .health_redis import REDIS_TIMEOUT, RedisHealth, Unavailable
from .ratelimit import Decision, Limits, MemoryLimiter
from .ratelimit_lua import ACQUIRE, ADD_TOKENS, RENEW

PREFIX = "tg:"


class _Lease:
    """A concurrency slot held in Redis: the leases set of one key, and this request's member."""

    __slots__ = ("zkey", "member")

    def __init__(self, zkey: str, member: str):
        self.zkey, self.member = zkey, member


class RedisLimiter:
    """Limits shared by every process that uses the same Redis; see the module docstring."""

    def __init__(self, client: aioredis.Redis, url: str = "", failure_mode: str = "fail_open",
                 lease_seconds: float = 30.0, prefix: str = PREFIX, clock=None, timeout: float = REDIS_TIMEOUT):
        self.client = client
        self.failure_mode = failure_mode
        self.lease_seconds = float(lease_seconds)
        self.prefix = prefix
        self.health = RedisHealth(client, url, failure_mode, timeout=timeout).use()
        self._clock = clock  # tests: a function returning "now" in seconds instead of Redis TIME
        self._acquire = client.register_script(ACQUIRE)
        self._add_tokens = client.register_script(ADD_TOKENS)
        self._renew = client.register_script(RENEW)
        self._local = MemoryLimiter()  # fail_open's per-process limits while Redis is down
        self._held: dict[str, str] = {}  # lease member -> leases set, for renewal
        self._ids = itertools.count(1)
        self._instance = secrets.token_hex(6)
        self._renewer = None

    def keys(self, key: str) -> list[str]:
        # The {hash tag} keeps one client key's three Redis keys in one Cluster slot.
        base = "%s{%s}" % (self.prefix, key)
        return [base + ":req", base + ":tok", base + ":leases"]

    def _now(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    async def acquire(self, key: str, limits: Limits) -> Decision:
        if not (limits.requests_per_minute or limits.tokens_per_minute or limits.concurrent_requests):
            return Decision(True, key, limits)  # an unlimited key needs no Redis, even in an outage
        member = "%s:%d" % (self._instance, next(self._ids))
        keys = self.keys(key)
        try:
            async with self.health.call():
                out = await self._acquire(keys=keys, args=[
                    self._now(), limits.requests_per_minute, limits.tokens_per_minute,
                    limits.concurrent_requests, member, repr(self.lease_seconds)])
        except Unavailable:
            pass  # decided by the failure mode, below
        else:
            return self._decision(key, limits, out, keys[2], member)
        if self.failure_mode == "fail_closed":
            raise GatewayError(503, "the rate limiter's store is unreachable; retry shortly",
                               code="ratelimit_unavailable", headers={"Retry-After": "1"})
        return await self._local.acquire(key, limits)

    def _decision(self, key: str, limits: Limits, out: list, zkey: str, member: str) -> Decision:
        d = Decision(bool(int(out[0])), key, limits, reason=out[1] or "", retry_after=int(out[2]))
        d.remaining_requests, d.reset_requests = int(float(out[3])), float(out[4])
        d.remaining_tokens, d.reset_tokens = int(float(out[5])), float(out[6])
        if d.allowed and limits.concurrent_requests:
            d.lease = _Lease(zkey, member)
            self._held[member] = zkey
            self._start_renewing()
        return d  # without a concurrency limit there is no lease, and nothing to release

    async def release(self, decision: Decision) -> None:
        lease, decision.lease = decision.lease, None
        if isinstance(lease, _Lease):
            self._held.pop(lease.member, None)
            try:
                async with self.health.call():
                    await self.client.zrem(lease.zkey, lease.member)
            except Unavailable:
                pass  # the lease expires by itself within lease_seconds
        elif lease is not None:  # taken from the per-process limiter during an outage
            decision.lease = lease
            await self._local.release(decision)

    async def add_tokens(self, key: str, limits: Limits, n: int) -> None:
        if not limits.tokens_per_minute or n <= 0:
            return
        try:
            async with self.health.call():
                await self._add_tokens(keys=[self.keys(key)[1]], args=[self._now(), limits.tokens_per_minute, n])
        except Unavailable:
            await self._local.add_tokens(key, limits, n)

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew_loop())

    async def _renew_loop(self) -> None:
        """Extends every lease this process holds, every lease_seconds / 3, while it holds any."""
        while self._held:
            await asyncio.sleep(self.lease_seconds / 3)
            await self.renew()

    async def renew(self) -> None:
        if self.health.down or not self._held:
            return
        by_set: dict[str, list[str]] = {}
        for member, zkey in list(self._held.items()):
            by_set.setdefault(zkey, []).append(member)
        try:
            async with self.health.call(), self.client.pipeline(transaction=False) as pipe:
                for zkey, members in by_set.items():
                    await self._renew(keys=[zkey], args=[self._now(), repr(self.lease_seconds), *members],
                                      client=pipe)
                await pipe.execute()
        except Unavailable:
            pass  # renewed by the next round once Redis is back

    def state(self) -> dict:
        """The breaker's state and call counts (GET /debug/state)."""
        return dict(self.health.state(), failure_mode=self.failure_mode)

    def inflight(self) -> int:
        """Leases this process holds now (in Redis or, during an outage, locally)."""
        return len(self._held) + self._local.inflight()

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        await self.health.done()
