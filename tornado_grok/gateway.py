"""The objects every handler is given, and the one timer that watches all open streams."""

import asyncio
import logging
import os
import time

from tornado.ioloop import PeriodicCallback

from . import errors
from .accounting import Accounting
from .auth import KeyStore
from .config import Config
from .cors import CorsPolicy
from .metrics import Metrics
from .ownership import Ownership, load_secret
from .ratelimit import Limits, MemoryLimiter
from .streamstore_memory import MemoryStreamStore
from .upstream import UpstreamClient
from .upstreams import Pool

log = logging.getLogger("tornado_grok")


class Gateway:
    """Config, upstream client, keys, limiter and accounting, plus the registry of open streams.

    One PeriodicCallback sweeps the open streams for keep-alives and the first-event, idle and total
    timeouts, so the per-chunk path only stamps a time; no timer is created per stream or per chunk.
    """

    def __init__(self, config: Config, upstream: UpstreamClient | None = None,
                 keys: KeyStore | None = None, limiter=None, accounting=None, metrics=None,
                 stream_store=None, ownership: Ownership | None = None):
        self.config = config
        self.upstream = upstream or UpstreamClient(
            config.upstream_url, config.upstream_key, max_clients=config.max_upstream,
            connect_timeout=config.connect_timeout, max_body_size=config.max_upstream_body)
        self.keys = keys if keys is not None else KeyStore(config.keys_file)
        self.limiter = limiter if limiter is not None else MemoryLimiter()
        self.accounting = accounting if accounting is not None else Accounting()
        self.metrics = metrics if metrics is not None else Metrics(self)
        self.stream_store = stream_store if stream_store is not None else MemoryStreamStore(config)
        self.cors = CorsPolicy.from_config(config)  # None: CORS is off
        self.ownership = ownership if ownership is not None else Ownership(load_secret(config))
        self.upstreams = Pool(config, self.upstream, self.metrics)  # routing and failover over upstream
        self.ownership.names = self.upstreams.id_names
        self.default_limits = Limits(config.requests_per_minute, config.concurrent_requests,
                                     config.tokens_per_minute)
        self._limits: dict = {}  # per key digest, for one generation of the keys file
        self._limits_generation = 0
        self.streams: set = set()
        self.inflight = 0  # admitted /api/v1 requests not yet finished
        self.open_requests = 0  # /api/v1 requests being handled, admitted or not
        self.connections = None  # the server's ConnectionSlots (max_connections), set by server.py
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._sweeper = PeriodicCallback(self.sweep, 1000 * self.sweep_interval())

    def sweep_interval(self) -> float:
        c = self.config
        shortest = min(c.keepalive_interval, c.first_event_timeout, c.idle_timeout, c.total_timeout,
                       c.resume_window, c.failover_first_event_timeout or c.total_timeout)
        return max(0.02, min(1.0, shortest / 4))

    def start(self) -> None:
        self._sweeper.start()

    def limits_for(self, key) -> Limits:
        generation = getattr(self.keys, "generation", 0)
        if generation != self._limits_generation:  # the keys file was re-read: limits may differ
            self._limits, self._limits_generation = {}, generation
        limits = self._limits.get(key.digest)
        if limits is None:
            limits = self._limits[key.digest] = Limits.for_key(self.default_limits, key.limits)
        return limits

    def request_started(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.inflight -= 1
        if self.inflight <= 0:
            self.inflight = 0
            self._idle.set()

    def sweep(self) -> None:
        now = time.monotonic()
        c = self.config
        for relay in list(self.streams):
            relay.check(now, c)
        self.stream_store.sweep(now)

    async def drain(self) -> None:
        """Stops taking work, lets requests in flight finish for drain_seconds, then ends the rest."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), self.config.drain_seconds)
        except asyncio.TimeoutError:
            log.warning("drain: %d streams still open after %ss; ending them", len(self.streams),
                        self.config.drain_seconds)
            for relay in list(self.streams):
                relay.abort(errors.draining())
            for call in list(self.upstream.active):
                call.cancel()  # non-streaming requests still upstream answer 503 draining
            try:  # a few loop turns for those requests to write their answers before connections close
                await asyncio.wait_for(self._idle.wait(), 5.0)
            except asyncio.TimeoutError:
                log.warning("drain: %d requests did not end after being cancelled", self.inflight)

    def state(self) -> dict:
        """What is held right now; all zero when the gateway is idle (GET /debug/state)."""
        limiter_inflight = getattr(self.limiter, "inflight", None)
        limiter_state = getattr(self.limiter, "state", None)  # the Redis breaker, when there is one
        return {
            "open_streams": len(self.streams),
            "paused_streams": sum(1 for r in self.streams if r.call is not None and r.call.paused),
            "upstream_active": len(self.upstream.active),
            "inflight": self.inflight,
            "open_requests": self.open_requests,
            "open_connections": self.connections.open if self.connections is not None else None,
            "limiter_inflight": limiter_inflight() if callable(limiter_inflight) else None,
            "draining": self.draining,
            "redis": limiter_state() if callable(limiter_state) else None,
            "pid": os.getpid(),  # which worker answered, with --workers N
            "resumable": self.stream_store.state(),
        }

    async def close(self) -> None:
        self._sweeper.stop()
        self.upstream.close()
        await self.limiter.close()
        await self.accounting.close()
        await self.stream_store.close()
