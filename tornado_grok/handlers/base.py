"""The core of every /api/v1 handler: BaseHandler (request id, sticky and CORS headers, the CORS
preflight, JSON answers) and APIHandler (body -> auth -> limits -> the endpoint's work, the whole
upstream call, accounting and the freeing of its slot); the screening, the error rendering and the
body checks they use live in the modules named for them."""

import os
import re
import time

import tornado
import ujson
from tornado import httputil, web

from .. import errors
from ..errors import GatewayError
from ..relay import unlink
from ..upstream import curl_errno
from ..usage import settle
from .backend_calls import backend_call, release_slot
from .error_rendering import JSON_CONTENT_TYPE, SSE_CONTENT_TYPE, ErrorRendering
from .json_body import _too_large, json_object
from .whole_fetch import fetch_whole

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SERVER = "TornadoServer/%s" % tornado.version
_date = [0, ""]  # (second, its HTTP date): the Date header is made once a second, not per response


def http_date() -> str:
    now = int(time.time())
    if now != _date[0]:
        _date[:] = now, httputil.format_timestamp(now)
    return _date[1]


def dumps(obj) -> bytes:
    return errors.json_bytes(obj)


class BaseHandler(ErrorRendering, web.RequestHandler):
    """Request id on every response, JSON errors, no tracebacks; dependencies come from initialize."""

    def initialize(self, gateway) -> None:
        self.gateway = gateway

    @property
    def config(self):
        return self.gateway.config

    def clear(self) -> None:
        """tornado's (the headers every response starts with), with the Date made once a second."""
        headers = self._headers = httputil.HTTPHeaders()
        headers["Server"] = _SERVER
        headers["Content-Type"] = "text/html; charset=UTF-8"
        headers["Date"] = http_date()
        self.set_default_headers()
        self._write_buffer = []
        self._status_code = 200
        self._reason = "OK"

    def set_default_headers(self) -> None:
        # clear() (and so send_error) calls this again: headers that must survive errors live here.
        if not hasattr(self, "request_id"):
            incoming = self.request.headers.get("X-Request-Id", "")
            self.request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
            self.sticky_headers = {}
            self.wants_sse = False
        # Values of the gateway's own making (or checked above) go in as they are, without the
        # check set_header makes of any value for line breaks.
        headers = self._headers
        headers["X-Request-Id"] = self.request_id
        for name, value in self.sticky_headers.items():
            headers[name] = value
        # settings, not self.gateway: the first call comes from tornado before initialize().
        cors = self.settings["gateway"].cors
        if cors is not None:
            for name, value in cors.response_headers(self.request.headers.get("Origin")):
                self.set_header(name, value)

    def options(self, *args, **kwargs) -> None:
        """A CORS preflight: answered without a key (405 while CORS is off)."""
        cors = self.gateway.cors
        if cors is None:
            raise self.method_not_allowed()
        if not cors.allows(self.request.headers.get("Origin")):
            raise GatewayError(403, "origin %r is not allowed (cors_origins)" % self.request.headers.get("Origin"),
                               code="cors_origin_not_allowed", kind="permission_error")
        for name, value in cors.preflight_headers(self.request.headers.get("Access-Control-Request-Headers")):
            self.set_header(name, value)
        self.set_status(204)
        self.finish()

    def set_sticky_header(self, name: str, value: str) -> None:
        """A header of the gateway's own making (a str) that stays on the response even when it
        turns into an error."""
        self.sticky_headers[name] = self._headers[name] = value

    def set_sse_headers(self) -> None:
        headers = self._headers
        headers["Content-Type"] = SSE_CONTENT_TYPE
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"

    def compute_etag(self):
        return None

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, web.HTTPError):
            return  # an answered client error, not a fault of ours
        super().log_exception(typ, value, tb)

    def write_json(self, obj_or_bytes, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", JSON_CONTENT_TYPE)
        self.finish(obj_or_bytes if isinstance(obj_or_bytes, bytes) else dumps(obj_or_bytes))

    def unsent_bytes(self) -> int:
        """Bytes written to this client's connection that the socket has not taken yet (0 once it
        is closed: tornado drops the write buffer of a closed stream, and nothing is owed then)."""
        stream = getattr(self.request.connection, "stream", None)
        buffer = stream._write_buffer if stream is not None else None
        return len(buffer) if buffer is not None else 0


class APIHandler(BaseHandler):
    """An authenticated /api/v1 endpoint: read body -> auth -> limits -> the endpoint's work."""

    def prepare(self) -> None:
        self.started = time.monotonic()
        self.key = None
        self.decision = None
        self.log_fields = {}
        if self.request.method == "OPTIONS":
            return  # a CORS preflight: no key, no limits, no upstream (BaseHandler.options)
        if self.gateway.draining:  # it may have begun while the body was read
            raise errors.draining()
        self.gateway.open_requests += 1
        self.counted_open = True
        # Caps, key and declared length were checked from the head (screen(), via app.py) before the
        # body was read; a chunked body is read up to the server's cap, twice the limit.
        if len(self.request.body) > self.config.max_body_size:
            raise _too_large(self.config.max_body_size)

    @classmethod
    def implements(cls, method: str) -> bool:
        """Whether this endpoint answers `method` (else tornado's 405, with no key needed)."""
        name = method.lower()
        return method in cls.SUPPORTED_METHODS and getattr(cls, name, None) is not getattr(
            web.RequestHandler, name, None)

    def json_body(self) -> dict:
        """The request body as a JSON object, or a 400 that names the problem (json_body.py)."""
        return json_object(self.request.body)

    async def begin(self) -> dict:
        """Reads the JSON body, then admits the request; auth and limit errors come before body errors."""
        try:
            body, problem = self.json_body(), None
        except GatewayError as e:
            body, problem = None, e
        if body is not None:
            self.wants_sse = self.answers_sse(body, self.config)
        await self.admit()
        if problem is not None:
            raise problem
        return body

    @staticmethod
    def answers_sse(body: dict, config) -> bool:
        """Whether this request's answer, errors included, is an event stream."""
        return False

    async def admit(self) -> None:
        """Auth, then limits; after it the request holds a concurrency lease until on_finish."""
        self.key = self.request.client_key  # authenticated from the head by screen()
        decision = await self.gateway.limiter.acquire(self.key.name, self.gateway.limits_for(self.key))
        for name, value in decision.headers().items():
            self.set_sticky_header(name, value)
        if not decision.allowed:
            if self.gateway.metrics is not None:
                self.gateway.metrics.rate_limited(decision.reason)
            raise GatewayError(429, decision.message(), code="rate_limit_exceeded",
                               headers={"Retry-After": str(decision.retry_after)})
        self.decision = decision
        self.gateway.request_started()

    def owner(self):
        """The ids this request's key owns (ownership.Owner): it binds the ids it hands out and opens
        the ids it is given, a 404 for any that is not its own. One per request: the upstream that
        serves it (served) names the upstream its ids are bound to."""
        owner = getattr(self, "_owner", None)
        if owner is None:
            owner = self._owner = self.gateway.ownership.owner(self.request.client_key.digest)
        return owner

    def locate(self, kind: str, client_id, what: str, field: str = "") -> str:
        """owner().open, and the request goes to the upstream the id belongs to (upstreams.py)."""
        upstream_id, name = self.owner().locate(kind, client_id, what, field)
        self.pinned = self.gateway.upstreams.by_id_name(name)
        return upstream_id

    def served(self, upstream) -> None:
        """The upstream an attempt of this request goes to: the access log names it, and the ids the
        request hands out are bound to it."""
        self.log_fields["upstream"] = upstream.name
        if upstream.id_name or getattr(self, "_owner", None) is not None:  # "" is every Owner's default
            self.owner().upstream = upstream.id_name

    def forward_headers(self) -> dict:
        """Headers sent upstream besides the gateway's own: the request id, and X-Mock-* in mock mode."""
        headers = {"X-Request-Id": self.request_id}
        if self.config.forward_mock_headers:
            for name, value in self.request.headers.get_all():
                if name.lower().startswith("x-mock-"):
                    headers[name] = value
        return headers

    async def fetch_response(self, method: str, path: str, body: dict | None = None, query: dict | None = None):
        """One non-streaming upstream call; returns a 2xx response, else raises the mapped error.
        A failure before any answer may go to another upstream (upstreams.py, fetch_whole)."""
        c = self.config
        response = await fetch_whole(self, method, path, dumps(body) if body is not None else None, query,
                                     body.get("model") if isinstance(body, dict) else None,
                                     min(c.first_event_timeout, c.total_timeout))
        if self.upstream_call.cancelled:
            raise errors.draining() if self.gateway.draining else _ClientGone()
        if response.code == 599:
            if self.upstream_call.too_large:
                raise errors.upstream_too_large(c.max_upstream_body)
            raise errors.from_curl(curl_errno(response))
        if response.code >= 300:
            raise errors.from_upstream(response.code, response.body or b"", self.upstream_call.headers(),
                                       self.gateway.upstream.secrets)
        return response

    async def fetch_whole(self, method: str, path: str, body: dict | None = None, query: dict | None = None):
        """One non-streaming upstream call; returns the parsed JSON or raises the mapped error."""
        response = await self.fetch_response(method, path, body, query)
        try:
            return ujson.loads(response.body)
        except ValueError:
            raise GatewayError(502, "the upstream answered with a body that is not JSON",
                               code="upstream_bad_json")

    def account(self, usage: dict | None, outcome: str | None) -> None:
        """Records usage and charges tokens once per request, off the response path."""
        if self.key is None or "ended" in self.log_fields:
            return
        usage = settle(self, usage, outcome)  # clamped, or estimated (usage.py)
        self.log_fields["ended"] = outcome or "error"
        self.log_fields["usage"] = usage
        if usage is not None and usage.get("usage_estimated"):
            self.log_fields["usage_estimated"] = True
        streamed = self.wants_sse or getattr(self, "relay", None) is not None
        backend_call(self.gateway.accounting, "record", self.key.name, usage, streamed, outcome or "error")
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(total, int) and total > 0:
            backend_call(self.gateway.limiter, "add_tokens", self.key.name,
                         self.gateway.limits_for(self.key), total)

    def on_finish(self) -> None:
        # getattr: a method tornado does not know is refused (405) before prepare() ran. A resumable
        # stream's relay accounts for it when its upstream ends (resumable.ResumableRelay).
        if getattr(self, "key", None) is not None and "ended" not in self.log_fields \
                and getattr(self, "reader", None) is None:
            self.account(None, self.error_outcome())
        self._release()

    def error_outcome(self) -> str:
        """How a request that ended with an error ended, by its error code (for log and accounting)."""
        err = getattr(self, "gateway_error", None)
        code = (err.code or "") if err is not None else ""
        if code.startswith("timeout") or code == "upstream_timeout":
            return "timeout"
        if code.startswith("upstream"):
            return "upstream_error"
        if code == "draining":
            return "drained"
        return "upstream_error" if self.get_status() >= 500 else "rejected"

    def on_connection_close(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()  # a resumable stream: it goes on without this client
        relay = getattr(self, "relay", None)
        if relay is not None:
            relay.client_gone()
        call = getattr(self, "upstream_call", None)
        if call is not None:
            call.cancel()
        self._release()

    def _break_cycles(self) -> None:
        super()._break_cycles()  # tornado's own, at the end of finish()
        unlink(self)

    def _release(self) -> None:
        if getattr(self, "counted_open", False):
            self.counted_open = False
            self.gateway.open_requests -= 1
        release_slot(self.gateway, self.hand_over_slot())

    def hand_over_slot(self):
        """The request's concurrency slot (its limiter decision), now no longer the handler's to
        free: a resumable stream's relay holds it while its upstream runs (release_slot)."""
        decision, self.decision = getattr(self, "decision", None), None
        return decision


class _ClientGone(web.HTTPError):
    """The client left while its request was upstream; there is nobody to answer."""

    def __init__(self):
        super().__init__(499, reason="Client Closed Request")
