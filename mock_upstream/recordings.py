"""The recording format (mock-recording/1): loading, validation, and rendering into Plans.

The format is documented once, in README.md ("Recording format"). Every problem found while loading
raises RecordingError naming the file and the line, e.g. `story.jsonl:7: delay_ms must be a
non-negative number`. Everything that can be encoded is encoded at load time; per request only the
echoed `model` is spliced in, so replaying is a join of bytes.
"""

import base64
import binascii
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field

from mock_upstream.faults import FaultError, parse_fault, split_utf8
from mock_upstream.plan import DISCONNECT, DONE_BYTES, STALL, WRITE, Plan, Step, dumps

FORMAT = "mock-recording/1"
BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recordings")
HEADER_KEYS = {"format", "name", "description", "kind", "status", "headers", "fault", "request", "api"}
EVENT_KINDS = ("data", "comment", "raw", "raw_b64", "action", "body")
EVENT_KEYS = set(EVENT_KINDS) | {"delay_ms", "if", "ms", "split_utf8", "event"}
APIS = ("chat", "responses")
# The Responses API's last event of a successful (or at least finished) stream; the journal's
# "complete" and the summed-up non-stream answer come from it, as [DONE] does for chat.
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
DEFAULT_STALL_MS = 600_000

# Top-level "model" values are replaced by this while encoding, then by the request's model.
_MODEL_MARK = "\x00mock-model\x00"
_MODEL_BYTES = dumps(_MODEL_MARK)


class RecordingError(ValueError):
    """A recording file is not valid mock-recording/1; the message names file and line."""


@dataclass(frozen=True, slots=True)
class EventTemplate:
    """A Step whose bytes still miss the request's model: `parts` are joined by it."""

    delay: float
    parts: tuple
    action: str = WRITE
    hold: float = 0.0
    event: bool = True
    done: bool = False
    usage_only: bool = False  # sent only when the request asked stream_options.include_usage
    split: bool = False  # written in two writes, cut inside its first multi-byte character

    def render(self, model_json: bytes) -> Step:
        data = self.parts[0] if len(self.parts) == 1 else model_json.join(self.parts)
        return Step(self.delay, data, self.action, self.hold, self.event, self.done)


def template(obj) -> tuple:
    """Encode `obj` (a chunk, a completion, a Response or a Responses event) into byte parts around
    its model: the top-level `model`, or the `model` of a Responses event's `response`."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), str):
        obj = dict(obj, model=_MODEL_MARK)
    elif isinstance(obj, dict) and isinstance(obj.get("response"), dict) and isinstance(obj["response"].get("model"), str):
        obj = dict(obj, response=dict(obj["response"], model=_MODEL_MARK))
    return tuple(dumps(obj).split(_MODEL_BYTES))


def splice(parts: tuple, model_json: bytes) -> bytes:
    return parts[0] if len(parts) == 1 else model_json.join(parts)


@dataclass
class Recording:
    """One loaded recording; `plan()` turns it into a response for one request."""

    name: str
    path: str
    kind: str  # "stream" | "json"
    status: int = 200
    description: str = ""
    headers: dict = field(default_factory=dict)
    fault: dict | None = None
    api: str = "chat"  # "responses": a /v1/responses recording (typed events, a terminal event)
    events: list = field(default_factory=list)  # EventTemplate, for streams
    body: tuple = ()  # template parts of the JSON body (kind json, or a stream summed up)
    body_delay: float = 0.0
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def plan(self, model: str, stream: bool, include_usage: bool) -> Plan:
        model_json = dumps(model)
        if self.kind == "json" and (self.status >= 400 or not stream or not self.body[0].startswith(b"{")):
            return Plan(self.status, dict(self.headers), False, splice(self.body, model_json), self.body_delay)
        # Answered in the other shape than recorded: the recorded Content-Type no longer fits.
        headers = {k: v for k, v in self.headers.items() if k.lower() != "content-type"}
        if self.kind == "stream" and not stream:
            if self.body:
                return Plan(self.status, headers, False, splice(self.body, model_json), self.body_delay)
            return self._broken_body(headers)
        if self.kind == "stream":
            headers = dict(self.headers)
        return Plan(self.status, headers, True, steps=self.steps(model_json, include_usage))

    def _broken_body(self, headers: dict) -> Plan:
        """A non-stream request for a stream that never finishes: the same fault, without events."""
        last = self.events[-1] if self.events else None
        if last is not None and last.action in (DISCONNECT, STALL):
            hold = last.hold if last.action == STALL else 0.0
            return Plan(self.status, headers, False, b"", self.body_delay, disconnect_at=hold)
        if last is not None and last.parts[0].startswith(b"data: {"):
            body = last.parts[0][len(b"data: "):].rstrip(b"\n")
            return Plan(500, {"Content-Type": "application/json"}, False, body, self.body_delay)
        if last is not None and last.parts[0].startswith(b"event: error\ndata: {"):
            event = json.loads(last.parts[0].split(b"\ndata: ", 1)[1])
            body = dumps({"code": event.get("code") or "Internal error", "error": event.get("message", "")})
            return Plan(500, {"Content-Type": "application/json"}, False, body, self.body_delay)
        return Plan(500, {"Content-Type": "application/json"}, False,
                    dumps({"code": "Internal error", "error": "the stream ended without [DONE]"}), self.body_delay)

    def steps(self, model_json: bytes, include_usage: bool) -> list:
        """The rendered steps, cached per (model, include_usage): the common case is a join."""
        key = (model_json, include_usage)
        steps = self._cache.get(key)
        if steps is None:
            events = self.events if self.kind == "stream" else self._json_as_stream()
            steps = []
            for e in events:
                if include_usage or not e.usage_only:
                    steps += split_utf8([e.render(model_json)]) if e.split else [e.render(model_json)]
            steps = tuple(steps)
            self._cache[key] = steps
            if len(self._cache) > 64:
                self._cache.popitem(last=False)
        return list(steps)

    def _json_as_stream(self) -> list:
        """A completion asked for as a stream: one chunk with the message, one with the finish."""
        completion = json.loads(splice(self.body, _MODEL_BYTES))
        return completion_as_events(completion, self.body_delay)


def completion_as_events(completion: dict, delay: float = 0.0) -> list:
    """chat.completion -> chunk events (role+content after `delay`, finish, usage if asked, [DONE])."""
    base = {k: completion[k] for k in ("id", "created", "model") if k in completion}
    base["object"] = "chat.completion.chunk"
    choice = (completion.get("choices") or [{}])[0]
    delta = dict(choice.get("message") or {"role": "assistant", "content": ""})
    finish = choice.get("finish_reason", "stop")
    events = [
        EventTemplate(delay, _wrap(template(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])))),
        EventTemplate(0.0, _wrap(template(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}])))),
    ]
    if completion.get("usage"):
        usage = _wrap(template(dict(base, choices=[], usage=completion["usage"])))
        events.append(EventTemplate(0.0, usage, usage_only=True))
    events.append(EventTemplate(0.0, (DONE_BYTES,), done=True))
    return events


def summarize_stream(chunks: list) -> dict | None:
    """Fold a stream's chunk objects into the chat.completion a non-stream request would get."""
    firsts = [c for c in chunks if isinstance(c, dict) and "choices" in c]
    if not firsts:
        return None
    first = firsts[0]
    message = {"role": "assistant", "content": ""}
    reasoning, tool_calls, finish, usage = "", {}, "stop", None
    for chunk in firsts:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            message["content"] += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                merge_tool_call(tool_calls, call)
            finish = choice.get("finish_reason") or finish
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
        message["content"] = message["content"] or None
    completion = {"id": first.get("id", "chatcmpl-mock"), "object": "chat.completion",
                  "created": first.get("created", 0), "model": first.get("model", "")}
    completion["choices"] = [{"index": 0, "message": message, "finish_reason": finish}]
    if usage:
        completion["usage"] = usage
    return completion


def merge_tool_call(calls: dict, call: dict) -> None:
    index = call.get("index", len(calls))
    if index not in calls:
        calls[index] = json.loads(json.dumps(call))
        calls[index].pop("index", None)
        return
    fn = calls[index].setdefault("function", {})
    more = (call.get("function") or {}).get("arguments") or ""
    fn["arguments"] = (fn.get("arguments") or "") + more


# ---------------------------------------------------------------- loading and validation


class _Where:
    """Builds RecordingError messages prefixed with `file:line:`."""

    def __init__(self, path: str):
        self.file = os.path.basename(path)
        self.line = 0

    def error(self, message: str) -> RecordingError:
        return RecordingError(f"{self.file}:{self.line}: {message}")


def load_file(path: str) -> Recording:
    """Load and validate one `.jsonl` recording; any problem raises RecordingError."""
    where = _Where(path)
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    parsed = []
    for number, raw in enumerate(lines, 1):
        where.line = number
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise where.error(f"not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise where.error("each line must be a JSON object")
        parsed.append((number, obj))
    if not parsed:
        where.line = 1
        raise where.error("empty recording: the first line must be the header")
    where.line, header = parsed[0]
    recording = _header(header, path, where)
    _body_lines(recording, parsed[1:], where)
    return recording


def _header(header: dict, path: str, where: _Where) -> Recording:
    if header.get("format") != FORMAT:
        raise where.error(f'the header must say "format": "{FORMAT}"')
    unknown = set(header) - HEADER_KEYS
    if unknown:
        raise where.error(f"unknown header field(s): {', '.join(sorted(unknown))}")
    stem = os.path.splitext(os.path.basename(path))[0]
    name = header.get("name", stem)
    if name != stem:
        raise where.error(f'name "{name}" must match the file name "{stem}"')
    kind = header.get("kind", "stream")
    if kind not in ("stream", "json"):
        raise where.error('kind must be "stream" or "json"')
    status = header.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise where.error("status must be an HTTP status code (100-599)")
    headers = header.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, (str, int)) for v in headers.values()):
        raise where.error("headers must be an object of strings")
    fault = header.get("fault")
    if fault is not None:
        try:
            parse_fault(fault)
        except FaultError as e:
            raise where.error(f"fault: {e}") from None
    description = header.get("description", "")
    if not isinstance(description, str):
        raise where.error("description must be a string")
    api = header.get("api", "chat")
    if api not in APIS:
        raise where.error('api must be "chat" or "responses"')
    headers = {str(k): str(v) for k, v in headers.items()}
    return Recording(name, path, kind, status, description, headers, fault, api=api)


def _body_lines(recording: Recording, lines: list, where: _Where) -> None:
    chunks = []
    for number, obj in lines:
        where.line = number
        unknown = set(obj) - EVENT_KEYS
        if unknown:
            raise where.error(f"unknown field(s): {', '.join(sorted(unknown))}")
        kinds = [k for k in EVENT_KINDS if k in obj]
        if len(kinds) != 1:
            raise where.error(f"each line needs exactly one of: {', '.join(EVENT_KINDS)}")
        delay = obj.get("delay_ms", 0)
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            raise where.error("delay_ms must be a non-negative number")
        kind = kinds[0]
        if (kind == "body") != (recording.kind == "json"):
            raise where.error('a "body" line belongs only in a kind "json" recording, and only there')
        if kind == "body":
            if recording.body:
                raise where.error('a kind "json" recording has exactly one "body" line')
            recording.body = template(obj["body"]) if not isinstance(obj["body"], str) else (obj["body"].encode(),)
            recording.body_delay = delay / 1000.0
            continue
        if "event" in obj and (recording.api != "responses" or kind != "data" or not isinstance(obj["event"], str)
                               or not obj["event"] or any(c in obj["event"] for c in "\r\n")):
            raise where.error('"event" (a one-line name) belongs only to a "data" line of an api "responses" recording')
        event = _event(kind, obj, delay / 1000.0, where)
        recording.events.append(event)
        if kind == "data" and isinstance(obj["data"], dict):
            chunks.append(obj["data"])
    where.line = lines[-1][0] if lines else where.line
    if recording.kind == "json" and not recording.body:
        raise where.error('a kind "json" recording needs a "body" line')
    if recording.api == "responses":
        final = [c for c in chunks if c.get("type") in TERMINAL and isinstance(c.get("response"), dict)]
        if final:
            recording.body = template(final[-1]["response"])
            recording.body_delay = sum(e.delay for e in recording.events)
    elif recording.kind == "stream" and any(e.done for e in recording.events):
        summary = summarize_stream(chunks)
        if summary is not None:
            recording.body = template(summary)
            recording.body_delay = sum(e.delay for e in recording.events)


def _event(kind: str, obj: dict, delay: float, where: _Where) -> EventTemplate:
    only = obj.get("if")
    if only not in (None, "include_usage"):
        raise where.error('"if" can only be "include_usage"')
    if "split_utf8" in obj and kind != "data":
        raise where.error('"split_utf8" belongs only to a "data" line')
    if "ms" in obj and obj.get("action") != STALL:
        raise where.error('"ms" belongs only to an action "stall" line')
    value = obj[kind]
    if kind == "data":
        if value == "[DONE]":
            return EventTemplate(delay, (DONE_BYTES,), done=True, usage_only=bool(only))
        if isinstance(value, str):
            raise where.error('data must be a JSON object or "[DONE]" (use "raw" for other text)')
        split = obj.get("split_utf8", False)
        if not isinstance(split, bool) or (split and "\\u" not in json.dumps(value)):
            raise where.error("split_utf8 must be true or false, on data with a non-ASCII character")
        parts = _wrap(template(value))
        if "event" in obj:
            parts = (b"event: " + obj["event"].encode() + b"\n" + parts[0],) + parts[1:]
        done = obj.get("event") in TERMINAL
        return EventTemplate(delay, parts, usage_only=bool(only), split=split, done=done)
    if kind == "comment":
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise where.error("comment must be a one-line string")
        text = (": " + value if value else ":").encode()
        return EventTemplate(delay, (text + b"\n\n",), event=False, usage_only=bool(only))
    if kind == "raw":
        if not isinstance(value, str):
            raise where.error("raw must be a string")
        return EventTemplate(delay, (value.encode(),), usage_only=bool(only))
    if kind == "raw_b64":
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise where.error("raw_b64 must be valid base64") from None
        return EventTemplate(delay, (data,), usage_only=bool(only))
    return _action(value, obj, delay, where)


def _wrap(parts: tuple) -> tuple:
    """Put `data: ` before the first part and the blank line after the last."""
    parts = list(parts)
    parts[0] = b"data: " + parts[0]
    parts[-1] = parts[-1] + b"\n\n"
    return tuple(parts)


def _action(value, obj: dict, delay: float, where: _Where) -> EventTemplate:
    if value == DISCONNECT:
        return EventTemplate(delay, (b"",), action=DISCONNECT, event=False)
    if value == STALL:
        ms = obj.get("ms", DEFAULT_STALL_MS)
        if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms < 0:
            raise where.error("ms must be a non-negative number")
        return EventTemplate(delay, (b"",), action=STALL, hold=ms / 1000.0, event=False)
    raise where.error('action must be "disconnect" or "stall"')


def load_dir(path: str) -> dict:
    """All `*.jsonl` recordings of a directory, by name (sorted, so errors are deterministic)."""
    found = {}
    for entry in sorted(os.listdir(path)):
        if entry.endswith(".jsonl"):
            recording = load_file(os.path.join(path, entry))
            found[recording.name] = recording
    return found


def load_all(extra_dirs=()) -> dict:
    """The bundled recordings, then those of `extra_dirs` (a later one replaces an earlier name)."""
    found = load_dir(BUILTIN_DIR)
    for directory in extra_dirs:
        found.update(load_dir(directory))
    return found


__all__ = ["FORMAT", "Recording", "RecordingError", "load_all", "load_dir", "load_file"]
