"""The one error model of the gateway and its two renderings: a JSON body and an SSE event.

Upstream failures are mapped to it in one place, `from_upstream` and `from_curl`, whose table has
its own unit test (tests/test_errors.py).
"""

import re

import ujson
from tornado.web import HTTPError

from .redact import scrub

# curl error numbers the gateway tells apart (libcurl's CURLE_* values).
CURLE_COULDNT_RESOLVE_HOST = 6
CURLE_COULDNT_CONNECT = 7
CURLE_PARTIAL_FILE = 18
CURLE_OPERATION_TIMEDOUT = 28
CURLE_ABORTED_BY_CALLBACK = 42
CURLE_GOT_NOTHING = 52
CURLE_RECV_ERROR = 56

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


def json_bytes(obj) -> bytes:
    """Compact UTF-8 JSON. A lone surrogate (a client's JSON "\\ud800") has no UTF-8 form: then the
    text is written with ASCII escapes, which JSON readers decode to the same string."""
    text = ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return ujson.dumps(obj, ensure_ascii=True, escape_forward_slashes=False).encode()


class GatewayError(HTTPError):
    """An error a client sees: HTTP status, message text, OpenAI-style type and code, extra headers.

    It is a tornado HTTPError so that raising it anywhere in a handler reaches write_error with its
    status and without a traceback in the log.
    """

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict | None = None, kind: str | None = None):
        super().__init__(status)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.kind = kind or _TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")

    def json_body(self) -> bytes:
        """The non-streaming rendering."""
        return json_bytes(
            {"error": {"message": "API error: " + self.message, "type": self.kind, "code": self.code}})

    def sse_event(self, openai_form: bool = False) -> bytes:
        """The streaming rendering: the seed's `data: {"error":"API error: ..."}` event."""
        if openai_form:
            obj = {"error": {"message": "API error: " + self.message, "type": self.kind, "code": self.code}}
        else:
            obj = {"error": "API error: " + self.message}
        return b"data: " + json_bytes(obj) + b"\n\n"

    def __str__(self) -> str:
        return "%d: %s" % (self.status, self.message)

    def __repr__(self) -> str:
        return "GatewayError(%d, %r, code=%r)" % (self.status, self.message, self.code)


def upstream_text(body: bytes, secrets: tuple) -> str:
    """The `<text>` of an upstream error body (xAI's {"code","error"} or OpenAI's {"error":{"message"}}),
    with every piece of `secrets` (the upstream key) scrubbed: an upstream may quote the key it got.

    Every upstream text the gateway relays or logs comes through here: error bodies of any status
    (3xx included) and error events inside a stream. The text is scrubbed after JSON decoding, so a
    key written with escapes (\\u0078ai-...) is found too.
    """
    try:
        obj = ujson.loads(body)
    except (ValueError, TypeError):
        # Scrubbed before the cut, so the cut cannot leave a piece of the key too short to be found.
        return scrub(body[:4096].decode("utf-8", "replace"), secrets)[:300].strip()
    text = ""
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, str):
            text = err
        elif isinstance(err, dict) and isinstance(err.get("message"), str):
            text = err["message"]
        elif isinstance(obj.get("message"), str):
            text = obj["message"]
    return scrub(text, secrets)


# An upstream's Retry-After in seconds: ASCII digits, maybe a sign and a fraction (float() would
# also take "inf", "1e400" and "٣", and int() then raise OverflowError or read 3).
_RETRY_AFTER = re.compile(r"(-?)([0-9]{1,9})(?:\.[0-9]*)?")


def _retry_after(headers: dict | None, default: int = 1) -> str:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    match = _RETRY_AFTER.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return str(default)
    return "0" if match.group(1) else str(int(match.group(2)))


def from_upstream(status: int, body: bytes, headers: dict | None, secrets: tuple) -> GatewayError:
    """Maps an upstream error response to what the client sees; `secrets` as for upstream_text."""
    text = upstream_text(body, secrets) or "upstream returned HTTP %d" % status
    if status in (401, 403):
        # The gateway's own upstream key is wrong: not the client's fault, and not its business. A
        # retry cannot fix it either, so the SDKs are told not to (they retry every 5xx otherwise).
        return GatewayError(502, "the upstream rejected the gateway's credentials (HTTP %d)" % status,
                            code="upstream_auth", headers={"x-should-retry": "false"})
    if status == 429:
        extra = {"Retry-After": _retry_after(headers)}
        lowered = text.lower()
        if any(word in lowered for word in ("credit", "quota", "spending limit", "billing")):
            extra["x-should-retry"] = "false"
        return GatewayError(429, text, code="upstream_rate_limited", headers=extra)
    if status == 408:
        return GatewayError(504, "upstream timed out: " + text, code="upstream_timeout")
    if 400 <= status < 500:
        # The client's request as the upstream judged it (400, 404, 413, 422, and 410 for a retired
        # feature, ...): the same status, so the SDKs raise the right class and retry only what
        # they retry anyway (408, 409, 429).
        return GatewayError(status, text, code="upstream_%d" % status)
    if status >= 500:
        return GatewayError(502, "upstream error (HTTP %d): %s" % (status, text), code="upstream_%d" % status)
    return GatewayError(502, "unexpected upstream response (HTTP %d): %s" % (status, text),
                        code="upstream_%d" % status)


def from_curl(errno: int, message: str = "") -> GatewayError:
    """Maps a transport failure (a libcurl error number) to what the client sees."""
    if errno == CURLE_OPERATION_TIMEDOUT:
        return GatewayError(504, "upstream timed out", code="upstream_timeout")
    if errno in (CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST):
        return GatewayError(502, "upstream unreachable", code="upstream_unreachable")
    if errno in (CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_GOT_NOTHING):
        return GatewayError(502, "upstream closed the connection before the response ended",
                            code="upstream_disconnected")
    return GatewayError(502, "upstream transport error (curl %d)" % errno, code="upstream_transport")


def timeout(which: str) -> GatewayError:
    """A gateway-enforced timeout: `which` is first_event, idle or total."""
    return GatewayError(504, "upstream %s timeout" % which.replace("_", " "), code="timeout_" + which)


def draining() -> GatewayError:
    return GatewayError(503, "the gateway is shutting down; retry on another instance",
                        code="draining", headers={"Retry-After": "1"})


def upstream_too_large(limit: int) -> GatewayError:
    """A whole (non-streamed) upstream answer over max_upstream_body: refused, not buffered."""
    return GatewayError(502, "the upstream's answer is larger than max_upstream_body (%d bytes)" % limit,
                        code="upstream_too_large")
