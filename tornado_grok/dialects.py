"""What differs between the streaming APIs one StreamRelay carries: a small dialect object per API.

A dialect says how an upstream event is framed and checked (its fast path and its parsed path),
which event ends the stream, where usage and errors live, and how the gateway writes an error.
The relay (relay.py) owns everything else: reads, writes, backpressure, keep-alives, timeouts,
disconnects, accounting.

- ChatDialect: `data: {...}` events ending with `data: [DONE]`; usage in a chunk of its own (that a
  client which did not ask for it does not get); errors as the seed's `data: {"error": ...}`.
- ResponsesDialect: `event: <type>` + `data: {...}` pairs with a `sequence_number`, ending with
  response.completed, response.incomplete or response.failed (no [DONE]); usage in the terminal
  event's `response.usage`; errors as the Responses API's own `event: error`.
"""

import re

import ujson

from . import errors, response_failures, sse
from .errors import GatewayError, json_bytes
from .ownership import RESPONSE
from .relay import _rewrite as rewrite

TERMINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))
_SEQUENCE = re.compile(rb'"sequence_number":\s*(\d+)')


def bad_event() -> GatewayError:
    return GatewayError(502, "the upstream sent an event that is not a JSON object", code="upstream_bad_event")


class ChatDialect:
    """Chat completions: `data:` events, [DONE] at the end, the seed's error event."""

    typed = False  # the parser yields data payloads only
    numbered = False  # events carry no sequence number
    plain = staticmethod(sse.plain_events)
    path = "/chat/completions"
    incomplete = "the upstream ended the stream without [DONE]"

    __slots__ = ("drop_usage", "openai_errors")

    def __init__(self, drop_usage: bool = False, openai_errors: bool = False):
        self.drop_usage = drop_usage  # the client did not ask for the usage chunk
        self.openai_errors = openai_errors  # sse_error_format = "openai"

    def frame(self, relay, data: bytes):
        """One parsed event -> the bytes to relay (None: absorb it). Sets relay.saw_done at the end;
        raises GatewayError for an event that must end the stream."""
        if data == sse.DONE_PAYLOAD:
            relay.saw_done = True
            return sse.DONE
        # Parsed to check it, never re-encoded: the client gets the upstream's own bytes.
        try:
            obj = ujson.loads(data)
        except ValueError:
            obj = None
        if type(obj) is not dict:
            raise bad_event()
        if obj.get("error"):
            raise GatewayError(502, errors.upstream_text(data, relay.gateway.upstream.secrets) or "the upstream reported an error",
                               code="upstream_stream_error")
        usage = obj.get("usage")
        if usage:
            relay.usage_seen = usage
            if self.drop_usage and not obj.get("choices"):
                return None
        if relay.rewrite is not None:
            data = rewrite(data, relay.rewrite)
        return b"data: " + multiline(data) + b"\n\n"

    def error_event(self, err: GatewayError, relay) -> bytes:
        return err.sse_event(self.openai_errors)


class ResponsesDialect:
    """The Responses API: typed events, a terminal event at the end, the Responses error event."""

    typed = True  # the parser yields (event name, data) pairs
    numbered = True  # the error event's sequence_number follows the last one sent (relay.last_out)
    plain = staticmethod(sse.plain_deltas)
    path = "/responses"
    incomplete = ("the upstream ended the stream without a terminal event "
                  "(response.completed, response.incomplete or response.failed)")

    __slots__ = ("failed", "owner", "ids")

    def __init__(self, owner=None):
        self.failed = False  # the terminal event was response.failed
        self.owner = owner  # ownership.Owner: the response ids the client sees are bound to its key
        self.ids: dict = {}  # upstream response id -> (its JSON string, the client's), as bytes

    def frame(self, relay, event: tuple):
        name, data = event
        try:
            obj = ujson.loads(data)
        except ValueError:
            obj = None
        if type(obj) is not dict:
            raise bad_event()
        kind = obj.get("type")
        if kind == "error" or obj.get("error"):
            # The Responses `error` event keeps its code, message and param (UpstreamErrorEvent);
            # xAI's {"code","error"} object becomes the gateway's own error event. Either way in
            # the form every SDK raises on (error_event below).
            secrets = relay.gateway.upstream.secrets
            fields = response_failures.error_fields(obj, secrets) if kind == "error" else None
            if fields is not None:
                raise UpstreamErrorEvent(fields)
            raise GatewayError(502, errors.upstream_text(data, secrets) or "the upstream reported an error",
                               code="upstream_stream_error")
        response = obj.get("response")
        if type(response) is dict and self.owner is not None:
            data = self.bind_ids(data, response)
        if kind in TERMINAL:
            usage = response.get("usage") if type(response) is dict else None
            if usage:
                relay.usage_seen = usage
            self.failed = kind == "response.failed"
            relay.saw_done = True
            if kind != "response.completed":  # the upstream's failure texts, without the operator key
                data = response_failures.scrub_event(data, obj, relay.gateway.upstream.secrets)
        if relay.rewrite is not None:
            data = rewrite(data, relay.rewrite)
        if name is None:
            return b"data: " + multiline(data) + b"\n\n"
        return b"event: " + name + b"\ndata: " + multiline(data) + b"\n\n"

    def bind_ids(self, data: bytes, response: dict) -> bytes:
        """An event that carries a Response object (response.created, .in_progress, the terminal
        ones), with its `id` and `previous_response_id` as this key sees them. These events are
        parsed anyway; the delta fast path never carries an id and is never touched."""
        for field in ("id", "previous_response_id"):
            upstream_id = response.get(field)
            if type(upstream_id) is not str or not upstream_id:
                continue
            pair = self.ids.get(upstream_id)
            if pair is None:
                client_id = self.owner.issue(RESPONSE, upstream_id)
                pair = self.ids[upstream_id] = (json_bytes(upstream_id), json_bytes(client_id))
            data = data.replace(pair[0], pair[1])
        return data

    def error_event(self, err: GatewayError, relay) -> bytes:
        """`event: error` with the Responses error fields (type, code, message, param, the next
        sequence_number) and an `error` object: openai-python and openai-node raise APIError on
        an event whose `error` is an object, showing its message; other readers see a
        ResponseErrorEvent. The upstream's own error event (UpstreamErrorEvent) keeps its code,
        message and param as sent; only the `error` object and the sequence_number are added."""
        fields = getattr(err, "fields", None)
        if fields is not None:
            obj = {"type": "error", **fields, "sequence_number": next_sequence(relay.last_out), "error": fields}
            return b"event: error\ndata: " + json_bytes(obj) + b"\n\n"
        message = "API error: " + err.message
        obj = {"type": "error", "code": err.code, "message": message, "param": None,
               "sequence_number": next_sequence(relay.last_out),
               "error": {"type": err.kind, "code": err.code, "message": message, "param": None}}
        return b"event: error\ndata: " + json_bytes(obj) + b"\n\n"


class UpstreamErrorEvent(GatewayError):
    """The upstream's Responses `error` event: `fields` are its code, message and param as sent
    (response_failures.error_fields), relayed by ResponsesDialect.error_event."""

    def __init__(self, fields: dict):
        message = fields["message"] or "the upstream reported an error"
        super().__init__(502, message, code="upstream_stream_error")
        self.fields = fields


def next_sequence(last_out) -> int:
    """One more than the last sequence_number the client was sent (0 when none was)."""
    if not last_out:
        return 0
    data = b"".join(last_out) if len(last_out) > 1 else last_out[0]
    found = _SEQUENCE.findall(data[-4096:]) or _SEQUENCE.findall(data)
    return int(found[-1]) + 1 if found else 0


def multiline(data: bytes) -> bytes:
    """A payload the upstream sent over several `data:` lines goes out the same way: one line holding
    its newlines would end the event early for the client's reader (parsed path only)."""
    return data.replace(b"\n", b"\ndata: ") if b"\n" in data else data
