"""Per-key limits: requests per minute, concurrent requests, tokens per minute.

The contract every backend keeps (memory here, Redis in ratelimit_redis.py):

- `await acquire(key, limits)` admits or refuses one request. Admitting counts it once against the
  requests-per-minute bucket (a stream counts once, here, at admission) and takes a concurrency lease.
  It returns a Decision whether admitted or not; its headers() go on the response either way.
- `await release(decision)` gives the lease back; it is called exactly once for an admitted request.
- `await add_tokens(key, limits, n)` charges tokens seen in the upstream's usage after the fact.

Requests and tokens use token buckets that refill continuously (capacity = the per-minute limit), so
`x-ratelimit-reset-*` is the time until the bucket is full again, as OpenAI's headers mean it.
"""

import dataclasses
import math
import time


@dataclasses.dataclass(frozen=True)
class Limits:
    """One key's limits; 0 means unlimited."""

    requests_per_minute: int = 0
    concurrent_requests: int = 0
    tokens_per_minute: int = 0

    @classmethod
    def for_key(cls, defaults: "Limits", own: dict | None) -> "Limits":
        return dataclasses.replace(defaults, **own) if own else defaults


@dataclasses.dataclass
class Decision:
    """The outcome of acquire(): whether admitted, why not, and what the headers say."""

    allowed: bool
    key: str
    limits: Limits
    remaining_requests: int = 0
    reset_requests: float = 0.0
    remaining_tokens: int = 0
    reset_tokens: float = 0.0
    retry_after: int = 0
    reason: str = ""  # "requests", "concurrency" or "tokens" when refused
    lease: object = None

    def headers(self) -> dict:
        h = {}
        if self.limits.requests_per_minute:
            h["x-ratelimit-limit-requests"] = str(self.limits.requests_per_minute)
            h["x-ratelimit-remaining-requests"] = str(max(0, self.remaining_requests))
            h["x-ratelimit-reset-requests"] = format_seconds(self.reset_requests)
        if self.limits.tokens_per_minute:
            h["x-ratelimit-limit-tokens"] = str(self.limits.tokens_per_minute)
            h["x-ratelimit-remaining-tokens"] = str(max(0, self.remaining_tokens))
            h["x-ratelimit-reset-tokens"] = format_seconds(self.reset_tokens)
        return h

    def message(self) -> str:
        if self.reason == "concurrency":
            return "too many concurrent requests for this key (limit %d); retry when one finishes" % (
                self.limits.concurrent_requests)
        if self.reason == "tokens":
            return "token rate limit reached for this key (%d tokens per minute); retry in %d s" % (
                self.limits.tokens_per_minute, self.retry_after)
        return "rate limit reached for this key (%d requests per minute); retry in %d s" % (
            self.limits.requests_per_minute, self.retry_after)


def format_seconds(seconds: float) -> str:
    """OpenAI's duration style: 0s, 250ms, 1.5s, 2m3s."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return "%dms" % max(1, round(seconds * 1000))
    if seconds < 60:
        return ("%.3f" % seconds).rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(round(seconds), 60)  # rounded first: 119.6 s is 2m0s, not 1m60s
    return "%dm%ds" % (minutes, rest)


class Bucket:
    """A continuously refilling token bucket: `capacity` per minute."""

    __slots__ = ("capacity", "level", "stamp")

    def __init__(self, capacity: int, now: float):
        self.capacity = capacity
        self.level = float(capacity)
        self.stamp = now

    def refill(self, now: float) -> None:
        rate = self.capacity / 60.0
        self.level = min(float(self.capacity), self.level + (now - self.stamp) * rate)
        self.stamp = now

    def reset_after(self) -> float:
        return (self.capacity - self.level) * 60.0 / self.capacity

    def wait_for(self, amount: float) -> int:
        """Whole seconds until `amount` is available (at least 1). The 1e-9 keeps a float's last bit
        from adding a whole second (20.000000000000004 s is 20 s)."""
        return max(1, math.ceil((amount - self.level) * 60.0 / self.capacity - 1e-9))


class MemoryLimiter:
    """In-process state: exact for one process; with N worker processes each enforces its own."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._requests: dict[str, Bucket] = {}
        self._tokens: dict[str, Bucket] = {}
        self._inflight: dict[str, int] = {}

    def _bucket(self, table: dict, key: str, capacity: int, now: float) -> Bucket:
        b = table.get(key)
        if b is None or b.capacity != capacity:
            b = table[key] = Bucket(capacity, now)
        else:
            b.refill(now)
        return b

    async def acquire(self, key: str, limits: Limits) -> Decision:
        now = self._clock()
        d = Decision(True, key, limits)
        req = tok = None
        if limits.requests_per_minute:
            req = self._bucket(self._requests, key, limits.requests_per_minute, now)
            if req.level < 1:
                d.allowed, d.reason, d.retry_after = False, "requests", req.wait_for(1)
        if d.allowed and limits.tokens_per_minute:
            tok = self._bucket(self._tokens, key, limits.tokens_per_minute, now)
            if tok.level <= 0:
                d.allowed, d.reason, d.retry_after = False, "tokens", tok.wait_for(1)
        if d.allowed and limits.concurrent_requests:
            if self._inflight.get(key, 0) >= limits.concurrent_requests:
                d.allowed, d.reason, d.retry_after = False, "concurrency", 1
        if d.allowed:
            if req is not None:
                req.level -= 1
            self._inflight[key] = self._inflight.get(key, 0) + 1
            d.lease = key
        if req is not None:
            d.remaining_requests, d.reset_requests = int(req.level), req.reset_after()
        if limits.tokens_per_minute:
            tok = tok or self._bucket(self._tokens, key, limits.tokens_per_minute, now)
            d.remaining_tokens, d.reset_tokens = int(tok.level), tok.reset_after()
        return d

    async def release(self, decision: Decision) -> None:
        self.release_now(decision)

    def release_now(self, decision: Decision) -> None:
        """release(), synchronously: the handlers call this form of an in-process backend directly."""
        if decision.lease is None:
            return
        left = self._inflight.get(decision.key, 0) - 1
        if left > 0:
            self._inflight[decision.key] = left
        else:
            self._inflight.pop(decision.key, None)
        decision.lease = None

    async def add_tokens(self, key: str, limits: Limits, n: int) -> None:
        self.add_tokens_now(key, limits, n)

    def add_tokens_now(self, key: str, limits: Limits, n: int) -> None:
        if limits.tokens_per_minute and n > 0:
            b = self._bucket(self._tokens, key, limits.tokens_per_minute, self._clock())
            b.level -= n

    def inflight(self) -> int:
        """Leases held now, all keys together (the hardening tests assert it returns to 0)."""
        return sum(self._inflight.values())

    async def close(self) -> None:
        pass
