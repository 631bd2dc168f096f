"""The rate limiter shared through Redis, so that N processes on M machines enforce one limit.

It keeps the contract of ratelimit.py (acquire / release / add_tokens) with the same semantics as
MemoryLimiter, but every decision is one Lua script run atomically inside Redis:

- requests and tokens are token buckets stored as hashes {cap, level, stamp}, refilled from Redis's
  own clock (TIME), so the gateways' clocks never matter;
- concurrency is a set of leases, a sorted set per key scored by expiry time. A running request's
  lease is renewed every lease_seconds / 3, so a slot of a process that died (SIGKILL, power loss)
  is free again at most lease_seconds later, and never "for an hour".

When Redis cannot be reached, `redis_failure_mode` decides: "fail_open" admits requests under
per-process limits (the memory backend's, as best-effort headers), "fail_closed" answers 503 with
Retry-After. Every call has `redis_timeout` (tens of ms) to answer, so a Redis that hangs (stopped,
swapping, a network black hole) costs a request at most that long. The first failure opens a circuit
breaker (RedisHealth.down): from then on no request calls Redis or waits for a connection to it, each
decides by the failure mode at once, until a background PING sees Redis answer again. The outage is
logged once when it starts and once when it ends.
"""

import asyncio
import contextlib
import itertools
import logging
import secrets
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

from .errors import GatewayError
from .ratelimit import Decision, Limits, MemoryLimiter

log = logging.getLogger("tornado_grok.ratelimit")

PREFIX = "tg:"
PROBE_INTERVAL = 0.5  # seconds between PINGs while Redis is down
REDIS_TIMEOUT = 0.05  # default seconds for connect and for each command (config: redis_timeout)
LATE = 0.002  # a deadline timer that fires this late found the event loop busy: see patient_timeout
PATIENCE = 8  # a busy loop may extend a call's deadline up to this many timeouts after it began
MAX_CONNECTIONS = 16  # per process; more calls at once wait their turn for a connection

# Shared by the scripts: ARGV[1] is "now" in seconds, or "" to use Redis's own clock (TIME). Numbers
# are written with %.17g because redis.call() would truncate a Lua number to an integer.
_LUA_COMMON = """
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.17g', x) end
local function load(key, cap, now)
  local v = redis.call('HMGET', key, 'cap', 'level', 'stamp')
  if v[1] and tonumber(v[1]) == cap then
    local level, stamp = tonumber(v[2]), tonumber(v[3])
    if now > stamp then level = math.min(cap, level + (now - stamp) * cap / 60.0) end
    return level
  end
  return cap
end
local function save(key, cap, level, now)
  redis.call('HSET', key, 'cap', cap, 'level', num(level), 'stamp', num(now))
  -- a bucket left alone refills; once it would be full, forgetting it is the same thing
  redis.call('PEXPIRE', key, math.ceil((cap - level) * 60000 / cap) + 1000)
end
local function reset_after(cap, level) return (cap - level) * 60.0 / cap end
local function wait_for(cap, level, amount)
  return math.max(1, math.ceil((amount - level) * 60.0 / cap - 1e-9))
end
"""

# KEYS: requests bucket, tokens bucket, leases zset.
# ARGV: now, rpm, tpm, concurrency, lease id, lease seconds.
# Returns {allowed, reason, retry_after, remaining_requests, reset_requests, remaining_tokens,
#          reset_tokens, leases held before this one} (floats as strings).
ACQUIRE = _LUA_COMMON + """
local now = clock(ARGV[1])
local rpm, tpm, climit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lease_id, lease_s = ARGV[5], tonumber(ARGV[6])
local allowed, reason, retry = 1, '', 0
local req, tok = nil, nil
if rpm > 0 then
  req = load(KEYS[1], rpm, now)
  if req < 1 then allowed, reason, retry = 0, 'requests', wait_for(rpm, req, 1) end
end
if tpm > 0 then
  tok = load(KEYS[2], tpm, now)
  if allowed == 1 and tok <= 0 then allowed, reason, retry = 0, 'tokens', wait_for(tpm, tok, 1) end
end
local held = 0
if climit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(now))
  held = redis.call('ZCARD', KEYS[3])
  if allowed == 1 and held >= climit then allowed, reason, retry = 0, 'concurrency', 1 end
end
if allowed == 1 then
  if req then req = req - 1 end
  if climit > 0 then
    redis.call('ZADD', KEYS[3], num(now + lease_s), lease_id)
    redis.call('PEXPIRE', KEYS[3], math.ceil(lease_s * 1000) + 1000)
  end
end
local out = {allowed, reason, retry, '0', '0', '0', '0', held}
if req then
  save(KEYS[1], rpm, req, now)
  out[4], out[5] = num(req), num(reset_after(rpm, req))
end
if tok then
  save(KEYS[2], tpm, tok, now)
  out[6], out[7] = num(tok), num(reset_after(tpm, tok))
end
return out
"""

# KEYS: tokens bucket. ARGV: now, tpm, tokens used. The level may go below zero: the next requests
# wait until the bucket has refilled past it, as MemoryLimiter does.
ADD_TOKENS = _LUA_COMMON + """
local now, tpm, n = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local level = load(KEYS[1], tpm, now) - n
save(KEYS[1], tpm, level, now)
return num(level)
"""

# KEYS: leases zset. ARGV: now, lease seconds, lease ids. Only leases still present are extended
# (XX): one released (or expired) meanwhile must not come back.
RENEW = _LUA_COMMON + """
local now, lease_s = clock(ARGV[1]), tonumber(ARGV[2])
local renewed = 0
for i = 3, #ARGV do
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', num(now + lease_s), ARGV[i]) == 1 then
    renewed = renewed + 1
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(lease_s * 1000) + 1000)
return renewed
"""


def connect(url: str, timeout: float = REDIS_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    """A client that fails fast: a limiter that waits seconds for Redis stalls every request.

    Callers go through RedisHealth.call(), so the pool is never asked for more than max_connections
    at once (a burst of admissions queues on a semaphore, in order, instead).
    """
    # One immediate retry, on a new connection, for a closed connection only: a pooled connection
    # that a Redis restart closed fails its next command, which is no outage. A timeout is not
    # retried: a Redis that hangs would make every call wait twice.
    # The deadline is patient_timeout's, around every call. redis-py's own timeouts stop a call at
    # its longest patience even when the cancellation is lost: seen with uvloop when it arrives while
    # a new connection is opened (the handshake's read then waits for this timeout).
    backstop = timeout * (PATIENCE + 1)
    return aioredis.Redis.from_url(url, max_connections=max_connections, socket_connect_timeout=backstop,
                                   socket_timeout=backstop,
                                   retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                                   decode_responses=True)


def safe_url(url: str) -> str:
    """The Redis URL without its password, for log lines."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


@contextlib.asynccontextmanager
async def patient_timeout(seconds: float):
    """asyncio.timeout(seconds) that counts only time the event loop was free to read the answer.

    A deadline timer that fires late means the loop was busy (a burst of requests) and may not have
    read an answer that has arrived: the deadline is extended by `seconds`, as long as the call
    began less than PATIENCE * `seconds` ago. A Redis that hangs is still given up on after
    `seconds` on an idle loop (PATIENCE * `seconds` at worst on a busy one), and a burst on a healthy
    Redis does not open the breaker with answers that were waiting in the socket.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as deadline:
        def check(due: float) -> None:
            nonlocal handle
            now = loop.time()
            if now - due > LATE and now - began < seconds * PATIENCE:
                handle = loop.call_at(now + seconds, check, now + seconds)
            else:
                deadline.reschedule(now)  # expires on the next loop turn

        began = loop.time()
        handle = loop.call_at(began + seconds, check, began + seconds)
        try:
            yield
        finally:
            handle.cancel()


class Unavailable(Exception):
    """Redis is down (the breaker is open) or this call to it failed: decide without it."""


class RedisHealth:
    """One Redis connection shared by its users (the limiter, the accounting): a circuit breaker.

    Every call goes through call(). The first failure opens the breaker (`down`), logs loudly and
    starts a PING loop that closes it again and logs the recovery; while it is open, call() raises
    Unavailable at once, without touching Redis, and so do calls that were waiting for a connection.
    `slots` bounds the calls in flight to the pool's size. The last user to call done() closes the
    client, after the calls in flight have finished.
    """

    def __init__(self, client: aioredis.Redis, url: str, failure_mode: str,
                 max_connections: int = MAX_CONNECTIONS, timeout: float = REDIS_TIMEOUT):
        self.client = client
        self.slots = asyncio.Semaphore(max_connections)
        self.max_connections = max_connections
        self.timeout = timeout
        self.url = safe_url(url)
        self.failure_mode = failure_mode
        self.down = False
        self.down_since = 0.0
        self.outages = 0
        self.calls = 0  # calls sent to Redis
        self.skipped = 0  # calls not made because the breaker was open
        self.closing = False
        self._users = 0
        self._probe = None

    @contextlib.asynccontextmanager
    async def call(self):
        """Holds a connection slot around one Redis call; Unavailable instead while Redis is down.

        A RedisError or OSError inside opens the breaker and comes out as Unavailable.
        """
        if self.down:
            self.skipped += 1
            raise Unavailable()
        async with self.slots:
            if self.down:  # it went down while this call waited for a connection: do not queue behind it
                self.skipped += 1
                raise Unavailable()
            self.calls += 1
            try:
                async with patient_timeout(self.timeout):
                    yield self.client
            except (RedisError, OSError) as e:  # OSError includes TimeoutError
                self.failed(e)
                raise Unavailable() from e

    def state(self) -> dict:
        """Whether Redis is in use, and how many calls went to it or were decided without it."""
        return {"down": self.down, "outages": self.outages, "calls": self.calls, "skipped": self.skipped}

    def use(self) -> "RedisHealth":
        self._users += 1
        return self

    def failed(self, exc: BaseException) -> None:
        if self.down or self.closing:
            return
        self.down, self.down_since = True, time.monotonic()
        self.outages += 1
        consequence = ("requests are admitted under per-process limits (fail_open)"
                       if self.failure_mode == "fail_open" else "requests are refused with 503 (fail_closed)")
        log.error("REDIS UNREACHABLE at %s (%s: %s): shared rate limits are not enforced; %s until it is back",
                  self.url, type(exc).__name__, exc, consequence)
        self._probe = asyncio.ensure_future(self._wait_for_recovery())

    async def _wait_for_recovery(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                self.calls += 1
                async with patient_timeout(self.timeout):
                    await self.client.ping()
            except (RedisError, OSError):
                continue
            self.down = False
            log.warning("Redis at %s is reachable again after %.1f s: shared rate limits are enforced again",
                        self.url, time.monotonic() - self.down_since)
            return

    async def done(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        self.closing = True
        if self._probe is not None:
            self._probe.cancel()
        await asyncio.sleep(0)  # let releases scheduled just before the shutdown start

        async def quiesce():
            for _ in range(self.max_connections):
                await self.slots.acquire()

        try:
            await asyncio.wait_for(quiesce(), self.timeout * 2 + 1)
        except asyncio.TimeoutError:
            pass
        await self.client.aclose()


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
