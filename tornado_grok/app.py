"""make_app(config, gateway) -> tornado.web.Application: the one place routes are joined."""

import sys


import ujson
from tornado import web
from tornado.ioloop import IOLoop

from .config import Config
from .gateway import Gateway
from .handlers import admin, chat, health, images, models, responses, vision
from .handlers.base import NotFoundHandler, TooLargeHandler



class AccessLog:
    """The access log's writer: one line per request to stderr, the lines of one IOLoop turn
    written together (one write instead of a logging record, a lock and a flush per request)."""

    def __init__(self, stream=None):
        self.stream = stream
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        if not self.lines:
            IOLoop.current().add_callback(self.flush)
        self.lines.append(line)

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        if lines:
            stream = self.stream or sys.stderr
            stream.write("\n".join(lines) + "\n")
            stream.flush()


access_log = AccessLog()

ROUTE_MODULES = (chat, responses, images, vision, models, health, admin)


def make_app(config: Config, gateway: Gateway | None = None, **settings) -> web.Application:
    """The gateway's Application; run.py and the tests both build it here."""
    gateway = gateway or Gateway(config)
    routes = [(path, handler, {"gateway": gateway})
              for module in ROUTE_MODULES for path, handler in module.default_handlers]
    app = _Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args={"gateway": gateway},
        log_function=log_request if config.access_log else _metrics_only,
        compress_response=False,
        gateway=gateway,
        **settings,
    )
    return app


class _Application(web.Application):
    """Sends a request whose declared body is over the limit to a handler that answers 413 at once.

    The other handlers take their body whole (fewer IOLoop turns per request than streaming it).
    """

    def find_handler(self, request, **kwargs):
        length = request.headers.get("Content-Length")
        gateway = self.settings["gateway"]
        if length and length.isdigit() and int(length) > gateway.config.max_body_size:
            return self.get_handler_delegate(request, TooLargeHandler, {"gateway": gateway})
        return super().find_handler(request, **kwargs)


def _metrics_only(handler) -> None:
    gateway = handler.settings.get("gateway")
    if gateway is not None and gateway.metrics is not None:
        gateway.metrics.observe(handler)


def log_request(handler) -> None:
    """One JSON line per request: who, what, how long, how it ended (never a key or a body).

    Also the once-per-request hook of the metrics (tornado calls it when a request finishes).
    """
    _metrics_only(handler)
    fields = getattr(handler, "log_fields", None)
    status = handler.get_status()
    if fields is None and status < 400:
        return  # health checks and the like
    line = {
        "request_id": getattr(handler, "request_id", None),
        "method": handler.request.method,
        "path": handler.request.path,
        "status": status,
        "duration_ms": round(1000 * handler.request.request_time(), 2),
    }
    key = getattr(handler, "key", None)
    if key is not None:
        line["key"] = key.name
    if fields:
        line.update(fields)
    relay = getattr(handler, "relay", None)
    if relay is not None:
        line["stream"] = True
        line["events"] = line["chunks"] = relay.events
        line["bytes"] = relay.bytes_out
        line["keepalives"] = relay.keepalives
        if relay.first_event_at is not None:
            line["ttft_ms"] = round(1000 * (relay.first_event_at - relay.started), 2)
        if relay.error is not None:
            line["error"] = relay.error.message
            line["code"] = relay.error.code
    err = getattr(handler, "gateway_error", None)
    if err is not None and "error" not in line:
        line["error"] = err.message
        line["code"] = err.code
    if "ended" not in line and status >= 400:
        error_outcome = getattr(handler, "error_outcome", None)
        line["ended"] = error_outcome() if error_outcome is not None else "rejected"
    text = ujson.dumps(line, ensure_ascii=False, escape_forward_slashes=False)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate from a client's JSON: log it escaped
            text = ujson.dumps(line, ensure_ascii=True, escape_forward_slashes=False)
    token = _bearer_token(handler)
    if token and token in text:
        # The client put its own key in a field we log (a request id, a model name): not in our log.
        text = text.replace(token, "[redacted]")
    access_log.write(text)


def _bearer_token(handler) -> str:
    parts = (handler.request.headers.get("Authorization") or "").split()
    token = parts[-1] if parts else ""
    return token if len(token) >= 8 else ""



