"""GET /healthz (the process is alive) and GET /readyz (503 while draining); no key needed."""

from .base import BaseHandler


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    def get(self) -> None:
        if self.gateway.draining:
            self.set_header("Retry-After", "1")
            self.write_json({"status": "draining"}, status=503)
        else:
            self.write_json({"status": "ready", "open_streams": len(self.gateway.streams)})


default_handlers = [
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
]
