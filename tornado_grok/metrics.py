"""Prometheus metrics of one Gateway, on a CollectorRegistry of its own (never the global one).

Everything is recorded once per request, when it ends (`observe`, called from the access-log hook in
app.py), or read on scrape (gauges with set_function); nothing is done per chunk. A stream's bytes,
events and keep-alives are added from the relay's own counters at its end.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# generate_latest() writes the classic text format, which every Prometheus version reads as 0.0.4.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_ENDPOINTS = frozenset((
    "/api/v1/chat/completions", "/api/v1/responses", "/api/v1/images/generate", "/api/v1/images/generations",
    "/api/v1/vision/analyze", "/api/v1/models", "/healthz", "/readyz", "/metrics", "/admin/usage",
    "/debug/state",
))


def endpoint_label(path: str) -> str:
    """A bounded label for a request path: the route it matched, or "other"."""
    if path in _ENDPOINTS:
        return path
    if path.startswith("/api/v1/models/"):
        return "/api/v1/models/{id}"
    if path.startswith("/api/v1/responses/"):
        return "/api/v1/responses/{id}"
    return "other"


class Metrics:
    """The gateway's collectors; `render()` is the /metrics body."""

    def __init__(self, gateway=None):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tornado_grok_requests", "Requests answered, by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.errors = Counter("tornado_grok_errors", "Error answers (HTTP or in-band), by error code.",
                              ["code"], registry=r)
        self.upstream_errors = Counter("tornado_grok_upstream_errors",
                                       "Upstream failures (status, transport, timeout, bad stream), by kind.",
                                       ["kind"], registry=r)
        self.rate_limited_requests = Counter("tornado_grok_rate_limited", "Requests refused by a per-key "
                                             "limit, by reason (requests, concurrency, tokens, ...).",
                                             ["reason"], registry=r)
        self.overloaded = Counter("tornado_grok_overloaded", "Requests refused with 503 because a global "
                                  "cap was reached, by cap (max_connections, max_upstream).", ["cap"], registry=r)
        self.streams = Counter("tornado_grok_streams", "Streams ended, by how they ended.", ["ended"], registry=r)
        self.ttft = Histogram("tornado_grok_time_to_first_token_seconds", "From the request reaching the "
                              "relay to the first event written to the client.", buckets=_TTFT_BUCKETS, registry=r)
        self.stream_duration = Histogram("tornado_grok_stream_duration_seconds", "Whole duration of streamed "
                                         "responses.", buckets=_DURATION_BUCKETS, registry=r)
        self.keepalives = Counter("tornado_grok_keepalives", "Keep-alive comments sent to clients.", registry=r)
        self.bytes_relayed = Counter("tornado_grok_relayed_bytes", "Bytes of SSE written to streaming clients.",
                                     registry=r)
        self.events_relayed = Counter("tornado_grok_relayed_events", "SSE data events written to streaming "
                                      "clients.", registry=r)
        if gateway is not None:
            Gauge("tornado_grok_open_streams", "Streams open now.", registry=r) \
                .set_function(lambda: len(gateway.streams))
            Gauge("tornado_grok_open_requests", "Client requests being handled now (max_connections cap).",
                  registry=r).set_function(lambda: gateway.open_requests)
            Gauge("tornado_grok_upstream_active", "Upstream transfers in flight now (max_upstream cap).",
                  registry=r).set_function(lambda: len(gateway.upstream.active))
            Gauge("tornado_grok_draining", "1 while the gateway drains after SIGTERM.", registry=r) \
                .set_function(lambda: 1 if gateway.draining else 0)

        self._children: dict = {}

    def _child(self, metric, *labels):
        """metric.labels(*labels), remembered: prometheus_client's lookup costs more than the increment."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def rate_limited(self, reason: str) -> None:
        self._child(self.rate_limited_requests, reason or "unknown").inc()

    def overload(self, cap: str) -> None:
        self._child(self.overloaded, cap).inc()

    def observe(self, handler) -> None:
        """Records one finished request (called once per request from app.py's log hook)."""
        status = handler.get_status()
        endpoint = getattr(handler, "endpoint", None) or endpoint_label(handler.request.path)
        self._child(self.requests, endpoint, str(status)).inc()
        err = getattr(handler, "gateway_error", None)
        relay = getattr(handler, "relay", None)
        if relay is not None and relay.error is not None:
            err = relay.error
        if err is not None:
            code = err.code or "none"
            self._child(self.errors, code).inc()
            if code.startswith(("upstream", "timeout")):
                self._child(self.upstream_errors, code).inc()
        if relay is not None:
            self._child(self.streams, relay.outcome or "unknown").inc()
            if relay.first_event_at is not None:
                self.ttft.observe(relay.first_event_at - relay.started)
            self.stream_duration.observe(handler.request.request_time())
            if relay.keepalives:
                self.keepalives.inc(relay.keepalives)
            if relay.bytes_out:
                self.bytes_relayed.inc(relay.bytes_out)
            if relay.events:
                self.events_relayed.inc(relay.events)

    def render(self) -> bytes:
        return generate_latest(self.registry)
