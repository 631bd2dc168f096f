"""Response bodies: the incremental SSE parser and the classification of non-SSE bodies.

Per-event work is kept small: events are split at blank lines, a one-line `data:` event is taken
whole, and an event is JSON-parsed (ujson) only when a cheap check cannot decide.
"""
import re

import ujson

_MAX_KEPT_BODY = 4 << 20  # non-streaming answers are parsed whole up to this size
_TAIL = 64 << 10
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_CONTENT_NEEDLES = (b'"content":"', b'"content": "', b'"reasoning_content":"',
                    b'"reasoning_content": "')


class SSEParser:
    """Incremental SSE parser feeding one Result and the shared Recorder.

    Works on whole events: the buffer is split at blank lines, and an event that is one `data:`
    line (the usual case) is handled without walking its lines. CR and CRLF line ends are
    normalised to LF first.
    """

    __slots__ = ("res", "rec", "buf", "skip_lf")

    def __init__(self, res, rec):
        self.res = res
        self.rec = rec
        self.buf = b""
        self.skip_lf = False

    def feed(self, chunk, now):
        if self.skip_lf:  # the last chunk ended in CR: an LF now is the rest of that CRLF
            self.skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self.buf + chunk if self.buf else chunk
        if b"\r" in buf:
            self.skip_lf = buf[-1:] == b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = buf.split(b"\n\n")
        self.buf = events.pop()  # the unfinished event, if any
        for ev in events:
            if ev[:5] == b"data:" and b"\n" not in ev:
                self.dispatch(ev[6:] if ev[5:6] == b" " else ev[5:], now)
            elif ev:
                self._event_lines(ev, now)

    def _event_lines(self, ev, now):
        data = []
        for line in ev.split(b"\n"):
            if line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            # comments (":...") and other fields carry no content
        if data:
            self.dispatch(b"\n".join(data), now)

    def close(self, now):
        """End of body: a last event without its blank line still counts (lenient)."""
        buf, self.buf = self.buf, b""
        if buf:
            self._event_lines(buf, now)  # already LF-only

    def dispatch(self, payload, now):
        res = self.res
        if payload[:6] == b"[DONE]":
            res.done = True
            return
        if payload[:1] != b"{" or payload[-1:] != b"}":  # framing: a JSON object or nothing
            return self.malformed(payload)
        special = b'"error"' in payload or b'"usage"' in payload
        if not special:
            # Fast path, no JSON parsing: a key "content" (or "reasoning_content") whose string
            # value does not close at once is non-empty. Inside JSON strings quotes are escaped,
            # so these needles only match the object's own keys.
            for needle in _CONTENT_NEEDLES:
                i = payload.find(needle)
                if i >= 0 and payload[i + len(needle):i + len(needle) + 1] != b'"':
                    self.rec.content_event(res, now)
                    return
        has_content = b'content"' in payload
        if not (has_content or special):
            return
        try:
            ev = ujson.loads(payload)
        except ValueError:
            return self.malformed(payload)
        if type(ev) is not dict:
            return self.malformed(payload)
        err = ev.get("error")
        if err:
            if res.error is None:
                res.error = err if isinstance(err, str) else ujson.dumps(err)
            return
        if has_content:
            for ch in ev.get("choices") or ():
                delta = ch.get("delta") if type(ch) is dict else None
                if delta and (delta.get("content") or delta.get("reasoning_content")):
                    self.rec.content_event(res, now)
                    break
        usage = ev.get("usage")
        if usage and type(usage) is dict:
            ct = usage.get("completion_tokens")
            if isinstance(ct, int):
                res.tokens = ct


    def malformed(self, payload):
        """An event that is not a JSON object: the request ends as a protocol_error, whatever follows."""
        res = self.res
        if res.proto is None:
            res.proto = "malformed event: " + bytes(payload[:80]).decode("utf-8", "replace")


class TextSSEParser(SSEParser):
    """SSEParser that also keeps the answer's text (for --turns: the next turn appends it)."""

    __slots__ = ()

    def dispatch(self, payload, now):
        res = self.res
        if b'content"' in payload and payload[:1] == b"{" and payload[-1:] == b"}":
            try:
                ev = ujson.loads(payload)
            except ValueError:
                ev = None
            for ch in (ev.get("choices") or ()) if type(ev) is dict else ():
                delta = ch.get("delta") if type(ch) is dict else None
                if type(delta) is dict and isinstance(delta.get("content"), str):
                    res.text.append(delta["content"])
        SSEParser.dispatch(self, payload, now)


class ResponsesSSEParser(SSEParser):
    """The Responses API's typed events (`event: <type>` + `data: <json>`).

    A non-empty `response.output_text.delta` (or reasoning text/summary delta) is a content event;
    `response.completed` and `response.incomplete` end the request as done, `response.failed` and
    `error` as an error event, with the tokens from the terminal event's usage.output_tokens. Only
    terminal and error events are JSON-parsed (deltas are decided from the bytes); a body that ends
    without a terminal event ends as "no_done".
    """

    __slots__ = ()

    def _event_lines(self, ev, now):
        kind = None
        data = []
        for line in ev.split(b"\n"):
            if line[:6] == b"event:":
                kind = line[6:].strip()
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
        if data:
            self.typed(kind, b"\n".join(data), now)

    def dispatch(self, payload, now):
        self.typed(None, payload, now)  # a data-only event: its type is in the JSON

    def typed(self, kind, payload, now):
        ev = None
        if payload[:1] != b"{" or payload[-1:] != b"}":
            return self.malformed(payload)
        if kind is None:
            try:
                ev = ujson.loads(payload)
            except ValueError:
                return self.malformed(payload)
            if type(ev) is not dict or not isinstance(ev.get("type"), str):
                return
            kind = ev["type"].encode()
        if kind in _DELTAS:
            if b'"delta":""' not in payload and b'"delta": ""' not in payload:
                self.rec.content_event(self.res, now)
            return
        ending = _TERMINAL.get(kind)
        if ending is None:
            return
        if ev is None:
            try:
                ev = ujson.loads(payload)
            except ValueError:
                return self.malformed(payload)
        res = self.res
        response = ev.get("response") if type(ev) is dict else None
        response = response if type(response) is dict else {}
        usage = response.get("usage")
        if type(usage) is dict and isinstance(usage.get("output_tokens"), int):
            res.tokens = usage["output_tokens"]
        if ending == "done":
            res.done = True
        elif res.error is None:
            err = response.get("error") if kind == b"response.failed" else ev
            message = err.get("message") if type(err) is dict else None
            res.error = message if isinstance(message, str) else kind.decode()


_DELTAS = frozenset((b"response.output_text.delta", b"response.reasoning_text.delta",
                     b"response.reasoning_summary_text.delta"))
_TERMINAL = {b"response.completed": "done", b"response.incomplete": "done",
             b"response.failed": "error", b"error": "error"}


class BodyCollector:
    """Keeps a non-SSE body (JSON answer or error); past the limit, only its head and tail."""

    __slots__ = ("parts", "size", "tail")

    def __init__(self):
        self.parts = []
        self.size = 0
        self.tail = None  # set once the body outgrew _MAX_KEPT_BODY

    def feed(self, chunk, now):
        if self.tail is None and self.size + len(chunk) <= _MAX_KEPT_BODY:
            self.parts.append(chunk)
        elif self.tail is None:
            self.tail = chunk[-_TAIL:]
        else:
            self.tail = (self.tail + chunk)[-_TAIL:]
        self.size += len(chunk)

    def close(self, now):
        pass

    def bytes(self):
        return b"".join(self.parts)


def _huge_answer(res, body, rec, now):
    """A 200 JSON answer too big to keep: content from its head, usage from its tail."""
    head, tail = body.bytes(), body.tail
    for needle in _CONTENT_NEEDLES:
        i = head.find(needle)
        if i >= 0 and head[i + len(needle):i + len(needle) + 1] != b'"':
            rec.content_event(res, now)
            break
    m = _COMPLETION_TOKENS.search(tail)
    if m:
        res.tokens = int(m.group(1))
    res.done = True
    res.end = "done"


def classify_body(res, collector, stream, rec, now):
    """A complete non-SSE body: a JSON answer, an error status, or a surprise."""
    if res.status == 200 and not stream and collector.tail is not None:
        return _huge_answer(res, collector, rec, now)
    body = collector.bytes()
    if res.status != 200:
        res.end = "http_error"
        res.detail = body[:300].decode("utf-8", "replace")
        return
    try:
        obj = ujson.loads(body)
    except ValueError:
        obj = None
    if type(obj) is dict and obj.get("error"):
        res.end = "error_event"
        err = obj["error"]
        res.error = err if isinstance(err, str) else ujson.dumps(err)
        return
    if stream:
        res.end = "protocol_error"
        res.detail = f"asked to stream, got {res.content_type or 'no content type'}"
        return
    if type(obj) is not dict:
        res.end = "protocol_error"
        res.detail = "body is not a JSON object"
        return
    if obj.get("object") == "response":
        return _whole_response(res, obj, rec, now)
    for ch in obj.get("choices") or ():
        msg = ch.get("message") if type(ch) is dict else None
        if msg and (msg.get("content") or msg.get("reasoning_content")):
            rec.content_event(res, now)
            if res.text is not None and isinstance(msg.get("content"), str):
                res.text.append(msg["content"])
            break
    usage = obj.get("usage")
    if type(usage) is dict and isinstance(usage.get("completion_tokens"), int):
        res.tokens = usage["completion_tokens"]
    res.done = True
    res.end = "done"


def _whole_response(res, obj, rec, now):
    """A non-streamed Responses API answer: output text, usage.output_tokens, its status."""
    for item in obj.get("output") or ():
        parts = item.get("content") if type(item) is dict else None
        if any(type(p) is dict and p.get("text") for p in parts or ()):
            rec.content_event(res, now)
            break
    usage = obj.get("usage")
    if type(usage) is dict and isinstance(usage.get("output_tokens"), int):
        res.tokens = usage["output_tokens"]
    if obj.get("status") == "failed":
        res.end = "error_event"
        err = obj.get("error")
        res.error = err.get("message") if type(err) is dict and err.get("message") else "response failed"
        return
    res.done = True
    res.end = "done"
