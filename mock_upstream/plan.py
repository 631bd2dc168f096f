"""What one mock response is made of: a Plan of timed Steps, built per request, played by player.py.

Recordings and generators build plans; faults.py rewrites them; nothing here touches the network.
Steps are immutable so that rendered recordings can be cached and shared between requests.
"""

import json
from dataclasses import dataclass, field

WRITE = "write"
DISCONNECT = "disconnect"
STALL = "stall"

DONE_BYTES = b"data: [DONE]\n\n"


def dumps(obj) -> bytes:
    """Compact JSON as real upstreams send it: no spaces, UTF-8 left as is."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def data_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


@dataclass(frozen=True, slots=True)
class Step:
    """One write (flushed on its own) or one action, after `delay` seconds (times the speed)."""

    delay: float = 0.0
    data: bytes = b""
    action: str = WRITE
    hold: float = 0.0  # STALL: seconds of silence, not scaled by speed
    event: bool = True  # counts for faults' "after N events"; comments do not
    done: bool = False  # this is `data: [DONE]`


@dataclass
class Plan:
    """A whole response: status line, headers, then either a body or a list of steps."""

    status: int = 200
    headers: dict = field(default_factory=dict)
    stream: bool = True
    body: bytes = b""  # when not stream
    body_delay: float = 0.0  # when not stream: seconds (times the speed) before the body
    steps: list = field(default_factory=list)
    close_delimited: bool = False  # no chunked framing: detach, raw HTTP/1.1, close to end
    slow_headers: float = 0.0  # seconds (not scaled) before anything is sent
    disconnect_at: float | None = None  # seconds (not scaled) after the headers: drop the TCP link
    api: str = "chat"  # "responses": faults write Responses-shaped events (faults.py)


def error_body(code: str, message: str) -> bytes:
    """xAI's error body: always {"code": "<string>", "error": "<string>"}."""
    return dumps({"code": code, "error": message})


# gRPC-style descriptions, as xAI puts them in `code` (e.g. 400 "Client specified an invalid argument").
CODES = {
    400: "Client specified an invalid argument",
    401: "The request does not have valid authentication credentials for the operation",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    408: "The deadline expired before the operation could complete",
    422: "Client specified an invalid argument",
    429: "Some resource has been exhausted",
    500: "Internal error",
    502: "The service is currently unavailable",
    503: "The service is currently unavailable",
    504: "The deadline expired before the operation could complete",
}


def code_for(status: int) -> str:
    return CODES.get(status, "Internal error" if status >= 500 else "Client specified an invalid argument")


def error_plan(status: int, message: str, code: str | None = None, headers: dict | None = None) -> Plan:
    """An HTTP error with xAI's body, sent before any event (stream requests included)."""
    body = error_body(code or code_for(status), message)
    return Plan(status=status, headers=dict(headers or {}), stream=False, body=body)
