"""Several upstreams: the pool, routing, failover before the first byte, cool-down and circuits.

One pool of named upstreams (upstream_specs.py; the single upstream_url + XAI_API_KEY is a pool of
one). Every call of the shared UpstreamClient goes to the `target` (URL and key) of the upstream
picked for it. Nothing here knows HTTP framing: a transport asks `Attempts` for an upstream, tells
it how each attempt failed (a status, a transport error, a first-event timeout) and asks whether
to go on, so a second transport (gRPC) can use the same object.

- Routing: among the upstreams that serve the model, are not cooling down, have no open circuit
  and are under their own max_concurrent, the least busy by in-flight/weight; ties (an idle pool)
  by smooth weighted round robin, so weights hold exactly for sequential traffic.
- Failover: before the client has received a byte, a connect or transport failure, 429, 500, 502,
  503, 504 or a first-event timeout sends the request to the next upstream, at most
  upstream_attempts in all, and never past the client's own timeout.
- Cool-down: a 429 (or a 503 with Retry-After) keeps that upstream out for as long as the upstream
  said (Retry-After, retry-after-ms, x-ratelimit-reset-*; upstream_cooldown if it said nothing).
  circuit_failures failures in a row open its circuit for circuit_seconds; then one request (the
  probe) goes to it, and its success closes the circuit, its failure opens it again.
- With one upstream nothing is held back: every request goes to it and its answer reaches the
  client as it is (failover, cool-down and circuits need a second upstream to mean anything).
"""

import email.utils
import math
import re
import time

from . import errors
from .errors import GatewayError
from .upstream_specs import UpstreamSpec

FAILOVER_STATUSES = frozenset((429, 500, 502, 503, 504))
CONNECT_ERRNOS = frozenset((errors.CURLE_COULDNT_RESOLVE_HOST, errors.CURLE_COULDNT_CONNECT))
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class Upstream:
    """One upstream: where calls go (its target), its weight and cap, and its health."""

    __slots__ = ("name", "id_name", "target", "weight", "max_concurrent", "models", "inflight", "current",
                 "cool_until", "cool_status", "failures", "circuit_until", "probing", "pool")

    def __init__(self, pool, spec, target, id_name: str):
        self.pool = pool
        self.name = spec.name
        self.id_name = id_name  # the name its ids are bound with (ownership.py): "" for a single upstream
        self.target = target
        self.weight = spec.weight
        self.max_concurrent = spec.max_concurrent
        self.models = frozenset(spec.models)
        self.inflight = 0
        self.current = 0.0  # smooth weighted round robin
        self.cool_until = 0.0
        self.cool_status = 0
        self.failures = 0  # in a row
        self.circuit_until = None  # None: closed; else open until then, then half-open (one probe)
        self.probing = False

    def serves(self, model) -> bool:
        return not self.models or model is None or model in self.models

    def available(self, now: float) -> bool:
        if self.cool_until > now:
            return False
        if self.circuit_until is not None and (self.probing or self.circuit_until > now):
            return False
        return not self.max_concurrent or self.inflight < self.max_concurrent

    def back_at(self, now: float) -> float:
        """When it can take a request again (now, if it is only busy)."""
        until = max(self.cool_until, self.circuit_until or 0.0)
        return until if until > now else now

    def state(self, now: float) -> str:
        if self.circuit_until is not None:
            return "probing" if self.probing else ("open" if self.circuit_until > now else "half_open")
        if self.cool_until > now:
            return "cooling"
        if self.max_concurrent and self.inflight >= self.max_concurrent:
            return "full"
        return "ok"


class Pool:
    """The configured upstreams and how the next request is routed among them."""

    def __init__(self, config, client, metrics=None):
        self.config = config
        self.client = client
        specs = config.upstreams
        if specs:
            several = len(specs) > 1
            self.upstreams = [Upstream(self, s, client.target(s.url, s.key), s.name if several else "")
                              for s in specs]
        else:  # the one-line default: upstream_url and XAI_API_KEY, the client's own target
            self.upstreams = [Upstream(self, UpstreamSpec("default", config.upstream_url), None, "")]
        self.several = len(self.upstreams) > 1
        self.id_names = tuple(u.id_name for u in self.upstreams)
        self._by_id_name = {u.id_name: u for u in self.upstreams}
        self.metrics = metrics
        if metrics is not None:
            metrics.watch_upstreams(self)

    def by_id_name(self, id_name: str):
        return self._by_id_name.get(id_name)

    def attempts(self, model=None, pinned=None, budget: float = 0.0) -> "Attempts":
        """A new request's walk over the upstreams; `budget` is the client's timeout in seconds."""
        return Attempts(self, model if isinstance(model, str) else None, pinned, budget)

    def pick(self, model, tried: list, now: float):
        """The upstream for the next attempt, or None when none is left to try."""
        if not self.several:
            return None if tried else self.upstreams[0]
        best, low = [], None
        for u in self.upstreams:
            if u in tried or not u.serves(model) or not u.available(now):
                continue
            load = u.inflight / u.weight
            if low is None or load < low:
                best, low = [u], load
            elif load == low:
                best.append(u)
        if not best:
            return None
        if len(best) == 1:
            return best[0]
        total = 0.0
        chosen = None
        for u in best:
            u.current += u.weight
            total += u.weight
            if chosen is None or u.current > chosen.current:
                chosen = u
        chosen.current -= total
        return chosen

    def has_next(self, model, tried: list, now: float) -> bool:
        """Whether pick() would find an upstream (without moving the round robin)."""
        return any(u not in tried and u.serves(model) and u.available(now) for u in self.upstreams)

    def refusal(self, model, now: float) -> GatewayError:
        """Why no upstream can take a request: none serves its model, or every one that does is
        cooling down, open or full (429 or 503 with when the first is back)."""
        serving = [u for u in self.upstreams if u.serves(model)]
        if not serving:
            return GatewayError(400, "no upstream of this gateway serves model %r" % model,
                                code="model_not_available")
        back = min(u.back_at(now) for u in serving)
        retry_after = str(max(1, math.ceil(back - now)))
        limited = any(u.cool_until > now and u.cool_status == 429 for u in serving)
        if limited:
            return GatewayError(429, "every upstream is rate limited; retry after %s s" % retry_after,
                                code="upstream_rate_limited", headers={"Retry-After": retry_after})
        return GatewayError(503, "every upstream is unavailable (cooling down, failing or at its cap); "
                            "retry after %s s" % retry_after, code="upstream_unavailable",
                            headers={"Retry-After": retry_after})

    # -- outcomes ---------------------------------------------------------------------------------

    def failed(self, u: Upstream, kind: str, status: int, headers, now: float) -> None:
        """Notes a failed attempt: cool-down for a refusal with a time, else towards the circuit."""
        c = self.config
        if self.metrics is not None:
            self.metrics.upstream_failure(u.name, kind)
        if not self.several:
            return
        wait = retry_after_seconds(headers) if headers is not None else None
        if status == 429 or (status == 503 and wait is not None):
            u.cool_until = now + (c.upstream_cooldown if wait is None else wait)
            u.cool_status = status
            u.probing = False
            if self.metrics is not None:
                self.metrics.upstream_cooldown(u.name)
            return
        u.failures += 1
        if u.probing or u.failures >= c.circuit_failures:
            u.probing = False
            if u.circuit_until is None and self.metrics is not None:
                self.metrics.upstream_circuit_opened(u.name)
            u.circuit_until = now + c.circuit_seconds

    def succeeded(self, u: Upstream) -> None:
        u.failures = 0
        u.probing = False
        u.circuit_until = None

    def state(self) -> list:
        """Each upstream's state, for /healthz (names only: never a URL or a key)."""
        now = time.monotonic()
        out = []
        for u in self.upstreams:
            item = {"name": u.name, "state": u.state(now), "in_flight": u.inflight}
            back = u.back_at(now)
            if back > now:
                item["retry_after"] = round(back - now, 3)
            out.append(item)
        return out


class Attempts:
    """One request's walk over the upstreams: the one to try next, and whether a failure may go on."""

    __slots__ = ("pool", "model", "pinned", "deadline", "tried", "current", "started", "failovers")

    def __init__(self, pool: Pool, model, pinned, budget: float):
        self.pool = pool
        self.model = model
        self.pinned = pinned  # an object's upstream (ownership.py): no other may serve the request
        self.started = now = time.monotonic()
        self.deadline = now + budget if budget > 0 else math.inf
        self.tried = []
        self.current = None
        self.failovers = 0

    def first(self) -> Upstream:
        """The upstream of the first attempt; a GatewayError when none can take the request."""
        now = time.monotonic()
        u = self.pinned if self.pinned is not None else self.pool.pick(self.model, self.tried, now)
        if u is None:
            raise self.pool.refusal(self.model, now)
        return self._take(u, now)

    def _take(self, u: Upstream, now: float) -> Upstream:
        if u.circuit_until is not None and u.circuit_until <= now:
            u.probing = True  # the half-open circuit's one probe
        u.inflight += 1
        self.tried.append(u)
        self.current = u
        self.started = now
        if self.pool.metrics is not None:
            self.pool.metrics.upstream_request(u.name)
        return u

    def can_go_on(self, now: float) -> bool:
        """Whether a failure now could go to another upstream (budget, attempts and time left)."""
        return (self.pinned is None and self.pool.several and len(self.tried) < self.pool.config.upstream_attempts
                and now < self.deadline)

    def timeout(self) -> float:
        """A whole answer's attempt timeout: what is left of the client's, cut to
        failover_whole_timeout (when set) while another upstream could still be tried."""
        now = time.monotonic()
        left = self.deadline - now
        cut = self.pool.config.failover_whole_timeout
        if cut > 0 and self.can_go_on(now) and self.pool.has_next(self.model, self.tried, now):
            left = min(left, cut)
        return max(0.001, left)

    def stalled(self, now: float) -> bool:
        """Whether a stream's first event is overdue by failover_first_event_timeout with another
        upstream to go to (the relay then cancels this attempt and calls failed())."""
        limit = self.pool.config.failover_first_event_timeout
        return (limit > 0 and now - self.started > limit and self.can_go_on(now)
                and self.pool.has_next(self.model, self.tried, now))

    def failed(self, kind: str | None, status: int, headers) -> Upstream | None:
        """This attempt failed (kind None: a failure no other upstream would answer differently, or
        one after the first byte). Returns the next attempt's upstream, or None: the failure is the answer."""
        now = time.monotonic()
        u = self._release()
        if kind is None:
            return None
        if u is not None:
            self.pool.failed(u, kind, status, headers, now)
        if not self.can_go_on(now):
            return None
        nxt = self.pool.pick(self.model, self.tried, now)
        if nxt is None:
            return None
        self.failovers += 1
        if self.pool.metrics is not None:
            self.pool.metrics.upstream_failover(u.name if u is not None else "")
        return self._take(nxt, now)

    def refusal(self) -> GatewayError | None:
        """After the last failed attempt: the pool's refusal (429 or 503 with Retry-After) when every
        upstream that serves the model is now cooling down, open or full; else None (the last
        failure is the answer, as it is with a single upstream)."""
        now = time.monotonic()
        if self.pinned is not None or not self.pool.several or self.pool.has_next(self.model, [], now):
            return None
        return self.pool.refusal(self.model, now)

    def done(self, ok: bool) -> None:
        """The request is over (ok: the upstream answered it, whatever the client's fate)."""
        u = self._release()
        if u is not None and ok:
            self.pool.succeeded(u)

    def _release(self):
        u, self.current = self.current, None
        if u is not None:
            u.inflight -= 1
        return u


def classify(status: int, errno: int, cancelled: bool, stalled: bool = False) -> str | None:
    """The failover kind of a failed attempt that sent the client nothing, or None when another
    upstream would not help (a 4xx of the request itself, the gateway's own cancel)."""
    if stalled:
        return "first_event_timeout"
    if cancelled:
        return None
    if status in FAILOVER_STATUSES:
        return "status_%d" % status
    if status == 0 and errno:
        if errno in CONNECT_ERRNOS:
            return "connect"
        return "timeout" if errno == errors.CURLE_OPERATION_TIMEDOUT else "transport"
    return None


def retry_after_seconds(headers) -> float | None:
    """How long an upstream asked to be left alone: Retry-After (seconds or an HTTP date),
    retry-after-ms, or the later of x-ratelimit-reset-requests/-tokens ("1s", "6m0s", "20ms");
    None when it said nothing usable. Capped at an hour."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return min(3600.0, max(0.0, float(value) / 1000))
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return min(3600.0, max(0.0, float(value)))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                return min(3600.0, max(0.0, when.timestamp() - time.time()))
    waits = [_duration(headers.get(name)) for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")]
    waits = [w for w in waits if w is not None]
    return min(3600.0, max(waits)) if waits else None


def _duration(text) -> float | None:
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(a) * scale[b] for a, b in parts)
