"""GET /healthz (the process is alive; with several upstreams, each one's state by name), GET /readyz
(503 while draining), GET /metrics (Prometheus) and, with `debug_endpoints = true`, GET /debug/state
and POST /debug/gc; no key needed."""

from .. import gcpolicy, metrics
from ..errors import GatewayError
from .base import BaseHandler


class HealthHandler(BaseHandler):
    def get(self) -> None:
        pool = self.gateway.upstreams
        if pool.several:  # each upstream's state by name (upstreams.py), never its URL or key
            self.write_json({"status": "ok", "upstreams": pool.state()})
        else:
            self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    def get(self) -> None:
        if self.gateway.draining:
            self.set_header("Retry-After", "1")
            self.write_json({"status": "draining"}, status=503)
        else:
            self.write_json({"status": "ready", "open_streams": len(self.gateway.streams)})


class MetricsHandler(BaseHandler):
    """The gateway's Prometheus metrics, from its own registry."""

    def get(self) -> None:
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(self.gateway.metrics.render())


class DebugStateHandler(BaseHandler):
    """Counts of what the gateway holds (streams, upstream transfers, slots); 404 unless enabled."""

    def get(self) -> None:
        if not self.config.debug_endpoints:
            raise GatewayError(404, "no such endpoint: GET /debug/state", code="not_found")
        self.write_json(self.gateway.state())


class DebugGCHandler(BaseHandler):
    """A full garbage collection now, and the cyclic garbage it found (gcpolicy.sweep); 404 unless
    enabled. A request path that leaves cycles behind shows here by its types."""

    def post(self) -> None:
        if not self.config.debug_endpoints:
            raise GatewayError(404, "no such endpoint: POST /debug/gc", code="not_found")
        self.write_json(gcpolicy.sweep())


default_handlers = [
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/metrics", MetricsHandler),
    (r"/debug/state", DebugStateHandler),
    (r"/debug/gc", DebugGCHandler),
]
