"""The gRPC path over the upstream pool (upstreams.py): which upstreams take gRPC calls, their
channels and keys, and which gRPC failures go to another upstream.

- With an `[[upstreams]]` list, the upstreams that name a `grpc = "host:port"` address take gRPC
  calls (TLS unless `grpc_tls = false`), each with its own key; one without `grpc` takes none.
  With no list, `grpc_upstream` (+ `grpc_upstream_tls`) with XAI_API_KEY is the one gRPC upstream,
  the pool's single upstream (its ids are bound with the name "", as they always were).
- A call picks its upstream through the same Pool as HTTP requests (GrpcPool is a view of it over
  the gRPC upstreams): weights, least in-flight, max_concurrent, models, and one health per
  upstream, so a cool-down or an open circuit earned on one protocol holds for the other.
- Failover, before the first response message reaches the client (grpc_relay.py), after
  RESOURCE_EXHAUSTED (xAI's 429; a cool-down for its retry-after / retry-after-ms metadata, else
  upstream_cooldown), UNAVAILABLE (a refused or dropped connection, a 502/503: the connect failure
  and 503 of HTTP), INTERNAL and UNKNOWN (a 500, or an HTTP error of a proxy on the way), and
  DEADLINE_EXCEEDED of the gateway's own attempt timeout (failover_whole_timeout,
  failover_first_event_timeout) while the client's deadline has not passed. Any other status is the
  request's own answer (INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED, ...) and goes to the client.
"""

import grpc
from tornado.httputil import HTTPHeaders

from .upstreams import Pool

# gRPC status -> (the failure kind of the per-upstream metrics, the HTTP status Pool.failed reads)
FAILOVER_CODES = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("status_429", 429),
    grpc.StatusCode.UNAVAILABLE: ("unavailable", 503),
    grpc.StatusCode.INTERNAL: ("internal", 500),
    grpc.StatusCode.UNKNOWN: ("unknown", 500),
}


class GrpcPool(Pool):
    """The pool as gRPC calls see it: only the upstreams with a gRPC address are picked; outcomes
    are noted on the whole pool (one health per upstream)."""

    def __init__(self, pool: Pool, upstreams: list):
        self.whole = pool
        self.config, self.client, self.metrics = pool.config, pool.client, pool.metrics
        self.upstreams = upstreams
        self.several = len(upstreams) > 1
        self.id_names = pool.id_names
        self._by_id_name = {u.id_name: u for u in upstreams}

    def failed(self, u, kind, status, headers, now) -> None:
        self.whole.failed(u, kind, status, headers, now)


class GrpcUpstreams:
    """The gRPC upstreams of one gateway process: their channels and keys, and the pool view."""

    def __init__(self, config, pool: Pool, make_channel):
        self.channels = {}  # Upstream -> (channel, the key for its authorization metadata)
        if config.upstreams:
            specs = {s.name: s for s in config.upstreams}
            for u in pool.upstreams:
                spec = specs[u.name]
                if spec.grpc:
                    self.channels[u] = (make_channel(spec.grpc, spec.grpc_tls), spec.key)
        else:
            self.channels[pool.upstreams[0]] = (make_channel(config.grpc_upstream, config.grpc_upstream_tls),
                                                config.upstream_key)
        self.pool = GrpcPool(pool, [u for u in pool.upstreams if u in self.channels])

    def addresses(self, config) -> str:
        """For the start line: the gRPC upstreams by name (never a key)."""
        if not config.upstreams:
            return config.grpc_upstream
        named = ["%s (%s)" % (s.name, s.grpc) for s in config.upstreams if s.grpc]
        return ", ".join(named) if named else "none: no [[upstreams]] entry names a grpc address"

    async def close(self) -> None:
        for channel, _key in self.channels.values():
            await channel.close()


def classify(code: grpc.StatusCode, details: str, own_timeout: bool) -> tuple:
    """(failure kind, HTTP-like status) of a failed attempt that sent the client nothing, or
    (None, 0) when another upstream would not answer differently. `own_timeout`: a
    DEADLINE_EXCEEDED came from the gateway's attempt timeout, not the client's deadline."""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ("timeout", 504) if own_timeout else (None, 0)
    found = FAILOVER_CODES.get(code)
    if found is None:
        return None, 0
    if code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (details or "").lower():
        return "connect", 0
    return found


def metadata_headers(e) -> HTTPHeaders:
    """A failed call's initial and trailing metadata as headers (any case), for retry_after_seconds."""
    headers = HTTPHeaders()
    for metadata in (e.initial_metadata(), e.trailing_metadata()):
        for name, value in metadata or ():
            if isinstance(value, str):
                headers.add(name, value)
    return headers
