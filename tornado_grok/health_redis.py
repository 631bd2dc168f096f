"""The Redis connection shared by its users (the rate limiter, the accounting) and how every call
to it is bounded: connect(), patient_timeout and the circuit breaker RedisHealth. When Redis cannot
be reached, `redis_failure_mode` decides: "fail_open" admits requests under per-process limits (the
memory backend's, as best-effort headers), "fail_closed" answers 503 with Retry-After. Every call has
`redis_timeout` (tens of ms) to answer, so a Redis that hangs (stopped, swapping, a network black
hole) costs a request at most that long. The first failure opens a circuit breaker
(RedisHealth.down): from then on no request calls Redis or waits for a connection to it, each decides
by the failure mode at once, until a background PING sees Redis answer again. The outage is logged
once when it starts and once when it ends.
"""

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

log = logging.getLogger("tornado_grok.ratelimit")

PROBE_INTERVAL = 0.5  # seconds between PINGs while Redis is down
REDIS_TIMEOUT = 0.05  # default seconds for connect and for each command (config: redis_timeout)
LATE = 0.002  # a deadline timer that fires this late found the event loop busy: see patient_timeout
PATIENCE = 8  # a busy loop may extend a call's deadline up to this many timeouts after it began
MAX_CONNECTIONS = 16  # per process; more calls at once wait their turn for a connection


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
