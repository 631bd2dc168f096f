"""The base of every /api/v1 handler: request id, body reading with its size limit, auth, limits,
the one place error bodies are rendered (write_error), and the access-log fields."""

import os
import re
import time

import ujson
from tornado import web
from tornado.ioloop import IOLoop

from .. import errors, validate
from ..errors import GatewayError
from ..upstream import curl_errno
from ..usage import settle
from ..upstreams import classify

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_MAYBE_NON_FINITE = re.compile(rb"NaN|Infinity|[eE]\+?[0-9]{3}|[0-9]{309}")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def dumps(obj) -> bytes:
    return errors.json_bytes(obj)


class BaseHandler(web.RequestHandler):
    """Request id on every response, JSON errors, no tracebacks; dependencies come from initialize."""

    def initialize(self, gateway) -> None:
        self.gateway = gateway

    @property
    def config(self):
        return self.gateway.config

    def set_default_headers(self) -> None:
        # clear() (and so send_error) calls this again: headers that must survive errors live here.
        if not hasattr(self, "request_id"):
            incoming = self.request.headers.get("X-Request-Id", "")
            self.request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
            self.sticky_headers = {}
            self.wants_sse = False
        self.set_header("X-Request-Id", self.request_id)
        for name, value in self.sticky_headers.items():
            self.set_header(name, value)
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
        """A header that stays on the response even when it turns into an error."""
        self.sticky_headers[name] = value
        self.set_header(name, value)

    def set_sse_headers(self) -> None:
        self.set_header("Content-Type", SSE_CONTENT_TYPE)
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    def compute_etag(self):
        return None

    def write_error(self, status_code: int, **kwargs) -> None:
        err = _as_gateway_error(self, status_code, kwargs.get("exc_info"))
        self.gateway_error = err  # for the access log and metrics
        if err.status != status_code:
            self.set_status(err.status)
        self.finish(self.render_error(err))

    def render_error(self, err: GatewayError) -> bytes:
        """Sets an error's headers and content type before anything was sent; returns its body.

        A stream request's error is the seed's SSE event, except for a client whose Accept is only
        application/json (the OpenAI SDKs, LangChain): they show the text of a JSON error body
        and nothing of an event stream under an error status (README "Errors").
        """
        for name, value in err.headers.items():
            self.set_header(name, value)
        if self.wants_sse and not _json_only(self.request.headers.get("Accept")):
            self.set_sse_headers()
            return err.sse_event(self.config.sse_error_format == "openai")
        self.set_header("Content-Type", JSON_CONTENT_TYPE)
        return err.json_body()

    def allowed_methods(self) -> list:
        """The methods this path answers (the Allow header of a 405)."""
        return [m for m in self.SUPPORTED_METHODS if m != "OPTIONS"
                and getattr(type(self), m.lower()) is not getattr(web.RequestHandler, m.lower(), None)]

    def method_not_allowed(self) -> GatewayError:
        return GatewayError(405, "method %s is not allowed on %s" % (self.request.method, self.request.path),
                            code="method_not_allowed", headers={"Allow": ", ".join(self.allowed_methods())})

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


def _json_only(accept: str | None) -> bool:
    """Whether an Accept header names application/json and nothing else (parameters aside)."""
    return bool(accept) and "," not in accept and accept.split(";", 1)[0].strip().lower() == "application/json"


def _as_gateway_error(handler, status_code: int, exc_info) -> GatewayError:
    exc = exc_info[1] if exc_info else None
    if isinstance(exc, GatewayError):
        return exc
    if status_code == 405:
        return handler.method_not_allowed()
    if status_code == 404:
        return GatewayError(404, "no such endpoint: %s %s" % (handler.request.method, handler.request.path),
                            code="not_found")
    if isinstance(exc, web.HTTPError) and status_code < 500:
        return GatewayError(status_code, exc.log_message or exc.reason or "bad request", code="bad_request")
    return GatewayError(500, "internal error (request %s)" % handler.request_id, code="internal_error",
                        kind="api_error")


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
        """The request body as a JSON object, or a 400/413 that names the problem."""
        raw = self.request.body
        if not raw.strip():
            raise GatewayError(400, "the request body is empty; send a JSON object", code="invalid_json")
        try:
            body = ujson.loads(raw)
        except (ValueError, OverflowError) as e:
            raise GatewayError(400, "the request body is not valid JSON (%s)" % e, code="invalid_json")
        if not isinstance(body, dict):
            raise GatewayError(400, "the request body must be a JSON object, not %s" % _json_type(body),
                               code="invalid_json")
        if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(body):
            raise GatewayError(400, "the request body has a lone UTF-16 surrogate escape (\\ud800-\\udfff): "
                               "not valid Unicode", code="invalid_json")
        # Only a NaN/Infinity literal, a 3-digit exponent or 309+ digits can parse as a non-finite
        # float: one C-level scan of the bytes decides whether the walk over the parsed body is needed.
        where = _non_finite(body) if _MAYBE_NON_FINITE.search(raw) else None
        if where is not None:
            # ujson reads NaN, Infinity and 1e400 as floats; relayed, they would be invalid JSON
            # ("temperature":NaN) and they pass every range check (NaN < 0 is false).
            raise GatewayError(400, "field '%s' is not a finite number (NaN, Infinity and numbers too large "
                               "for a double are not JSON)" % where, code="invalid_number")
        return body

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


async def fetch_whole(handler, method: str, path: str, data: bytes | None, query, model, budget: float):
    """The attempts of one whole (non-streamed) upstream call: the next upstream after a failure that
    another one may answer differently (upstreams.classify), at most upstream_attempts, within
    `budget` seconds in all. Returns the last attempt's response; handler.upstream_call is its call."""
    attempts = handler.gateway.upstreams.attempts(model, getattr(handler, "pinned", None), budget)
    upstream = attempts.first()
    ok = False
    try:
        while True:
            handler.served(upstream)
            call = handler.upstream_call = handler.gateway.upstream.start(
                method, path, data, timeout=attempts.timeout(), extra_headers=handler.forward_headers(),
                query=query, target=upstream.target)
            response = await call.response()
            status = response.code if response.code != 599 else call.status
            kind = classify(status, curl_errno(response), call.cancelled)
            if kind is None:
                ok = response.code < 500
                return response
            upstream = attempts.failed(kind, status, call.headers() if status else None)
            if upstream is None:
                refusal = attempts.refusal()
                if refusal is not None:
                    raise refusal
                return response
            handler.log_fields["failovers"] = attempts.failovers
    finally:
        attempts.done(ok)


def release_slot(gateway, decision) -> None:
    """Frees a request's concurrency slot (the gateway's in-flight count and the limiter's lease)."""
    if decision is not None:
        gateway.request_finished()
        if decision.lease is not None:
            backend_call(gateway.limiter, "release", decision)


def backend_call(backend, name: str, *args) -> None:
    """Calls a limiter or accounting method off the response path: an in-process backend's `<name>_now`
    at once (no task per call), else the async `<name>` on the IOLoop."""
    now = getattr(backend, name + "_now", None)
    if now is not None:
        now(*args)
    else:
        IOLoop.current().add_callback(getattr(backend, name), *args)


class _ClientGone(web.HTTPError):
    """The client left while its request was upstream; there is nobody to answer."""

    def __init__(self):
        super().__init__(499, reason="Client Closed Request")


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, "the request body is larger than the limit of %d bytes" % limit,
                        code="body_too_large")


def _lone_surrogate(body: dict) -> bool:
    """Whether a string of the parsed body holds half a surrogate pair (pairs decode to one character)."""
    try:
        ujson.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _non_finite(body: dict) -> str | None:
    """Where the parsed body holds a NaN or an infinity (as `messages[0].temperature`), else None.

    One walk over the parsed containers, linear in what the parser already built (a stack, not
    recursion: ujson nests up to 1024 deep); the path is worked out only when there is one to name.
    """
    stack = [body]
    pop, push = stack.pop, stack.append
    while stack:
        value = pop()
        for item in (value.values() if type(value) is dict else value):
            kind = type(item)
            if kind is dict or kind is list:
                push(item)
            elif kind is float and item - item != 0.0:  # inf - inf and nan - nan are NaN
                return _path_of(body, item)
    return None


def _path_of(body: dict, target: float) -> str:
    """The path of the value `target` (by identity) in body, as error messages name fields."""
    stack = [(body, "")]
    while stack:
        value, path = stack.pop()
        for name, item in (value.items() if type(value) is dict else enumerate(value)):
            if type(name) is int:
                where = "%s[%d]" % (path, name)
            else:
                where = (path + "." if path else "") + (name if len(name) <= 64 else name[:64] + "...")
            if item is target:
                return where
            if type(item) is dict or type(item) is list:
                stack.append((item, where))
    return "(the body)"


def _overloaded(cap: str) -> GatewayError:
    return GatewayError(503, "the gateway is at capacity (%s); retry shortly" % cap, code="overloaded",
                        headers={"Retry-After": "1"})


def _json_type(value) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


@web.stream_request_body
class TooLargeHandler(BaseHandler):
    """A request whose body is over its limit (max_body_size by default): 413 before it is read."""

    def initialize(self, gateway, limit: int | None = None) -> None:
        super().initialize(gateway)
        self.limit = limit

    def prepare(self) -> None:
        raise _too_large(self.config.max_body_size if self.limit is None else self.limit)

    def data_received(self, chunk: bytes) -> None:
        pass


@web.stream_request_body
class NotFoundHandler(BaseHandler):
    """Unknown paths: a JSON 404, whatever the method, without reading a body."""

    def prepare(self) -> None:
        raise GatewayError(404, "no such endpoint: %s %s" % (self.request.method, self.request.path),
                           code="not_found")

    def data_received(self, chunk: bytes) -> None:
        pass


# A 401 whose body is this small and already on its way is read, so that the error takes the form
# the body asks for (a `"stream": true` request gets the seed's SSE event for a bad key).
PEEK_BYTES = 64 * 1024


def screen(gateway, request) -> GatewayError | None:
    """Checks a /api/v1 request from its head alone: draining, the connection cap, the key, the
    declared length, the upstream cap. Returns the refusal, or None after putting the key on
    `request.client_key` (so the handler does not authenticate again)."""
    if gateway.draining:
        return errors.draining()
    admitted = getattr(request.connection, "admitted", None)
    if admitted is not None and not admitted():
        request.connection.close_after_response()
        return _overloaded_now(gateway, "max_connections")
    try:
        request.client_key = gateway.keys.authenticate(request.headers.get("Authorization"))
    except GatewayError as e:
        return e
    length = request.headers.get("Content-Length")
    if length and (validate.ascii_digits(length, validate.CONTENT_LENGTH_DIGITS) or 0) > gateway.config.max_body_size:
        return _too_large(gateway.config.max_body_size)
    if len(gateway.upstream.active) >= gateway.config.max_upstream:
        return _overloaded_now(gateway, "max_upstream")
    return None


def _overloaded_now(gateway, cap: str) -> GatewayError:
    if gateway.metrics is not None:
        gateway.metrics.overload(cap)
    return _overloaded(cap)


@web.stream_request_body
class RefusedHandler(BaseHandler):
    """A /api/v1 request refused by screen(): answered before its body is read.

    For a 401 only (the seed's own example of an SSE error), a small body sent without `Expect:
    100-continue` is read (up to PEEK_BYTES, one JSON load) to give a stream request the SSE form;
    every other refusal is JSON at once (as caps and draining always were), and tornado closes the
    connection after it instead of reading the body.
    """

    def initialize(self, gateway, error: GatewayError, answers_sse) -> None:
        super().initialize(gateway)
        self.error = error
        self.answers_sse = answers_sse
        self.chunks: list[bytes] = []

    def prepare(self) -> None:
        headers = self.request.headers
        length = headers.get("Content-Length", "")
        if "Transfer-Encoding" not in headers and length in ("", "0"):
            return  # no body to avoid reading: answer in the method, and keep the connection open
        if (self.error.status != 401 or self.request.method != "POST" or "Expect" in headers
                or "Transfer-Encoding" in headers
                or (validate.ascii_digits(length, validate.CONTENT_LENGTH_DIGITS) or PEEK_BYTES + 1) > PEEK_BYTES
                or self.answers_sse is APIHandler.answers_sse):
            raise self.error

    def data_received(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def error_outcome(self) -> str:
        """How it ended, for the access log (as APIHandler.error_outcome)."""
        return "drained" if self.error.code == "draining" else "rejected"

    def get(self, *args) -> None:
        raise self.error

    delete = head = put = patch = get

    def post(self, *args) -> None:
        try:
            body = ujson.loads(b"".join(self.chunks))
        except (ValueError, OverflowError):
            body = None
        if isinstance(body, dict):
            self.wants_sse = self.answers_sse(body, self.config)
        raise self.error
