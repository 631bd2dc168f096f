"""The screening of a /api/v1 request from its head, before its body is read (screen(), called by
app.py), and the handlers that answer without reading a body: the refusal (RefusedHandler), a body
over its limit (TooLargeHandler), an unknown path (NotFoundHandler); with the overload answers."""

import ujson
from tornado import web

from .. import errors, validate
from ..errors import GatewayError
from .base import APIHandler, BaseHandler
from .json_body import _too_large


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
    """Unknown paths: a JSON 404, whatever the method. No body, or one of up to PEEK_BYTES sent
    without `Expect: 100-continue`, is read (and dropped) before the answer, so the connection stays
    open for the client's next request; any other is refused unread, and the connection closed."""

    def prepare(self) -> None:
        if not small_body(self.request.headers):
            self.not_found()

    def data_received(self, chunk: bytes) -> None:
        pass

    def not_found(self, *args) -> None:
        raise GatewayError(404, "no such endpoint: %s %s" % (self.request.method, self.request.path),
                           code="not_found")

    get = head = post = put = patch = delete = options = not_found


# A 401 whose body is this small and already on its way is read, so that the error takes the form
# the body asks for (a `"stream": true` request gets the seed's SSE event for a bad key).
PEEK_BYTES = 64 * 1024


def small_body(headers) -> bool:
    """Whether a request's body (or its lack of one) may be read before it is answered with an
    error: none, or one of up to PEEK_BYTES declared by its Content-Length and sent without
    `Expect: 100-continue` (which would invite the body the answer refuses)."""
    length = headers.get("Content-Length")
    size = 0 if length is None else validate.ascii_digits(length, validate.CONTENT_LENGTH_DIGITS)
    return "Transfer-Encoding" not in headers and "Expect" not in headers and size is not None \
        and size <= PEEK_BYTES


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


def _overloaded(cap: str) -> GatewayError:
    return GatewayError(503, "the gateway is at capacity (%s); retry shortly" % cap, code="overloaded",
                        headers={"Retry-After": "1"})


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
        if (self.error.status != 401 or self.request.method != "POST" or not small_body(headers)
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
