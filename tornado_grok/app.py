"""make_app(config, gateway) -> tornado.web.Application: the one place routes are joined."""

import ujson
from tornado import web

from . import validate
from .accesslog import access_log
from .config import Config
from .gateway import Gateway
from .handlers import admin, chat, health, images, models, passthrough, responses, streams, vision
from .handlers.base import APIHandler
from .handlers.screening import PEEK_BYTES, NotFoundHandler, RefusedHandler, TooLargeHandler, screen
from .metrics import endpoint_label
from .redact import REDACTED, loggable



ROUTE_MODULES = (chat, responses, streams, images, vision, models, passthrough, health, admin)


def make_app(config: Config, gateway: Gateway | None = None, **settings) -> web.Application:
    """The gateway's Application; run.py and the tests both build it here."""
    gateway = gateway or Gateway(config)
    # A module's routes are (path, handler) or (path, handler, its own initialize arguments).
    routes = [(entry[0], entry[1], dict(entry[2] if len(entry) > 2 else {}, gateway=gateway))
              for module in ROUTE_MODULES for entry in module.default_handlers]
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
    """Decides from the request head, before any body byte is read, whether a request is refused.

    A /api/v1 request is screened (draining, connection cap, key, declared size, upstream cap) and a
    refused one goes to a handler that answers at once, so an unauthenticated client never makes the
    gateway read or parse a body (nor gets `100 Continue`). The admitted key rides on the request, so
    the handler does not authenticate again. The other endpoints take no body: one over PEEK_BYTES
    is a 413 at once. Admitted handlers take their body whole (fewer IOLoop turns than streaming it).
    """

    def find_handler(self, request, **kwargs):
        gateway = self.settings["gateway"]
        delegate = super().find_handler(request, **kwargs)
        target = getattr(delegate, "handler_class", None)
        # A CORS preflight carries no key by design (BaseHandler.options answers it, or 405 with CORS off).
        if target is not None and issubclass(target, APIHandler) and target.implements(request.method) \
                and request.method != "OPTIONS":
            refusal = screen(gateway, request)
            if refusal is not None:
                return self.get_handler_delegate(request, RefusedHandler, {
                    "gateway": gateway, "error": refusal, "answers_sse": target.answers_sse})
            return delegate
        # The other endpoints (health, metrics, admin, unknown paths) take no body: a big or chunked
        # one is refused unread rather than read for nothing by someone who needs no key.
        length = validate.ascii_digits(request.headers.get("Content-Length", ""), validate.CONTENT_LENGTH_DIGITS)
        if "Transfer-Encoding" in request.headers or (length or 0) > PEEK_BYTES:
            if target is not NotFoundHandler:
                return self.get_handler_delegate(request, TooLargeHandler, {"gateway": gateway,
                                                                            "limit": PEEK_BYTES})
        return delegate


def _metrics_only(handler) -> None:
    gateway = handler.settings.get("gateway")
    if gateway is not None and gateway.metrics is not None:
        gateway.metrics.observe(handler)


def log_request(handler) -> None:
    """One JSON line per request: who, what, how long, how it ended (never a key or a body).

    Every value a client chose (a path, a model name, its own request id, an error text that may
    quote them) goes through redact.loggable: capped, key-like tokens masked, and no run of 12+
    characters of the request's own key or the upstream key. Also the once-per-request hook of the
    metrics (tornado calls it when a request finishes).
    """
    _metrics_only(handler)
    fields = getattr(handler, "log_fields", None)
    status = handler.get_status()
    if fields is None and status < 400:
        return  # health checks and the like
    request = handler.request
    token = _bearer_token(handler)
    gateway = handler.settings.get("gateway")
    upstream_secrets = gateway.upstream.secrets if gateway is not None else ()
    secrets = (token,) + upstream_secrets if token else upstream_secrets
    request_id = getattr(handler, "request_id", None)
    if request_id is not None and request_id == request.headers.get("X-Request-Id"):
        request_id = loggable(request_id, secrets)  # the client's own id, not one we made
    path = request.path
    line = {
        "request_id": request_id,
        "method": request.method,
        "path": path if endpoint_label(path) == path else loggable(path, secrets),
        "status": status,
        "duration_ms": round(1000 * request.request_time(), 2),
    }
    key = getattr(handler, "key", None)
    if key is not None:
        line["key"] = key.name
    if fields:
        line.update(fields)
        if "model" in fields:
            line["model"] = loggable(fields["model"], secrets)
    relay = getattr(handler, "relay", None)
    if relay is not None:
        line["stream"] = True
        line["events"] = line["chunks"] = relay.events
        line["bytes"] = relay.bytes_out
        line["keepalives"] = relay.keepalives
        if relay.first_event_at is not None:
            line["ttft_ms"] = round(1000 * (relay.first_event_at - relay.started), 2)
        if relay.error is not None:
            line["error"] = loggable(relay.error.message, secrets)
            line["code"] = relay.error.code
    reader = getattr(handler, "reader", None)  # a resumable stream's reader sends its own keep-alives
    if reader is not None:
        line["keepalives"] = line.get("keepalives", 0) + reader.keepalives
    err = getattr(handler, "gateway_error", None)
    if err is not None and "error" not in line:
        line["error"] = loggable(err.message, secrets)
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
    for secret in secrets:
        if secret in text:  # the last guard (a field the upstream filled, such as usage): never whole
            text = text.replace(secret, REDACTED)
    access_log.write(text)


def _bearer_token(handler) -> str:
    """The key the client sent, whatever its scheme (a 401 for `Basic <key>` must not log it either)."""
    parts = (handler.request.headers.get("Authorization") or "").split()
    token = parts[-1] if parts else ""
    return token if len(token) >= 8 else ""
