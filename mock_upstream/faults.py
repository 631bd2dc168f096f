"""Faults: what they are, how they rewrite a Plan, and the runtime store keyed by test id.

A fault is a small JSON/TOML object (all fields optional, see README.md "Faults"). It can sit in a
recording's header, in a scenario of scenarios.toml, or be set at run time with POST /_mock/faults
for the requests that carry a given `X-Mock-Test-Id`. Durations in a fault (`*_ms`) are absolute:
the speed factor does not scale them, so timeouts can be tested at speed 0.
"""

from dataclasses import dataclass, fields

from mock_upstream.plan import DISCONNECT, STALL, Plan, Step, code_for, data_event, dumps, error_plan

DEFAULT_STALL_MS = 600_000
MALFORMED = b'data: {"id":"chatcmpl-mock-malformed","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"oops"\n\n'
MALFORMED_RESPONSES = (b'event: response.output_text.delta\n'
                       b'data: {"type":"response.output_text.delta","item_id":"msg_mock_malformed","delta":"oops"\n\n')
PING = b": ping\n\n"


class FaultError(ValueError):
    """A fault object has an unknown field or a bad value."""


@dataclass(frozen=True)
class Fault:
    """All the ways a response can go wrong; None/False means "not this one"."""

    status: int | None = None  # HTTP error before any event, with xAI's body
    error: str | None = None  # its message (also the message of an in-band error event)
    code: str | None = None  # its xAI code (default: from the status)
    retry_after: int | None = None  # Retry-After header (seconds)
    error_after: int | None = None  # in-band error event after N events, then end (no [DONE])
    disconnect_after: int | None = None  # drop the TCP connection after N events
    disconnect_after_ms: float | None = None  # ... or N ms after the headers
    stall_after: int | None = None  # silence after N events ...
    stall_ms: float | None = None  # ... for this long (default 600000), then end without [DONE]
    malformed_after: int | None = None  # a chunk whose data is not valid JSON, after N events
    close_delimited: bool = False  # no chunked framing: raw HTTP/1.1, body ends when we close
    slow_headers_ms: float | None = None  # wait before the status line
    ping_every: int | None = None  # a `: ping` comment after every N events
    utf8_split: bool = False  # write the first multi-byte character of the stream in two writes
    scenario: str | None = None  # runtime only: force this scenario for the test id


_INTS = {"status", "retry_after", "error_after", "disconnect_after", "stall_after", "malformed_after", "ping_every"}
_NUMS = {"disconnect_after_ms", "stall_ms", "slow_headers_ms"}
_STRS = {"error", "code", "scenario"}
_BOOLS = {"close_delimited", "utf8_split"}
_ALIASES = {"no_chunked": "close_delimited"}


def parse_fault(obj) -> Fault:
    """Validate a fault object (from JSON or TOML) into a Fault."""
    if isinstance(obj, Fault):
        return obj
    if not isinstance(obj, dict):
        raise FaultError("a fault must be an object")
    values = {}
    known = {f.name for f in fields(Fault)}
    for key, value in obj.items():
        key = _ALIASES.get(key, key)
        if key not in known:
            raise FaultError(f"unknown fault field {key!r}")
        values[key] = _check(key, value)
    if values.get("status") is not None and not 400 <= values["status"] <= 599:
        raise FaultError("status must be an HTTP error status (400-599)")
    if values.get("ping_every") == 0:
        raise FaultError("ping_every must be at least 1")
    return Fault(**values)


def _check(key: str, value):
    if value is None:
        return None
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise FaultError(f"{key} must be true or false")
        return value
    if key in _STRS:
        if not isinstance(value, str):
            raise FaultError(f"{key} must be a string")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultError(f"{key} must be a non-negative number")
    if key in _INTS and value != int(value):
        raise FaultError(f"{key} must be a whole number")
    return int(value) if key in _INTS else float(value)


def merge(*faults) -> Fault | None:
    """Later faults win field by field (a scenario's own fault, then a runtime one)."""
    values = {}
    for fault in faults:
        if fault is None:
            continue
        for f in fields(Fault):
            value = getattr(fault, f.name)
            if _given(value):
                values[f.name] = value
    return Fault(**values) if values else None


def apply(plan: Plan, fault: Fault | None) -> Plan:
    """Rewrite `plan` so that it plays `fault`. Returns a new Plan (or `plan` when no fault)."""
    if fault is None:
        return plan
    if fault.status is not None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        message = fault.error or f"mock fault: HTTP {fault.status}"
        plan = error_plan(fault.status, message, fault.code, headers)
    elif fault.retry_after is not None:
        plan.headers["Retry-After"] = str(fault.retry_after)
    if fault.slow_headers_ms:
        plan.slow_headers = fault.slow_headers_ms / 1000.0
    if fault.disconnect_after_ms is not None and fault.status is None:
        plan.disconnect_at = fault.disconnect_after_ms / 1000.0
    if not plan.stream:
        return plan  # the other faults shape a stream's events
    plan.close_delimited = plan.close_delimited or fault.close_delimited
    steps = list(plan.steps)
    if fault.utf8_split:
        steps = split_utf8(steps)
    if fault.ping_every:
        steps = add_pings(steps, fault.ping_every)
    if fault.malformed_after is not None:
        malformed = MALFORMED_RESPONSES if plan.api == "responses" else MALFORMED
        steps = insert_after(steps, fault.malformed_after, Step(0.0, malformed))
    cut = _cut(fault, plan.api)
    if cut is not None:
        count, step = cut
        steps = insert_after(steps, count, step, truncate=True)
    plan.steps = steps
    return plan


def _cut(fault: Fault, api: str = "chat"):
    """The fault that ends the stream early, as (after N events, the final step)."""
    if fault.disconnect_after is not None:
        return fault.disconnect_after, Step(0.0, b"", DISCONNECT, event=False)
    if fault.error_after is not None:
        message = fault.error or "The service encountered an unexpected error"
        if api == "responses":
            # The Responses API's own error event; its sequence_number follows the N events before it.
            body = dumps({"type": "error", "code": fault.code or "server_error", "message": message, "param": None,
                          "sequence_number": fault.error_after})
            return fault.error_after, Step(0.0, b"event: error\n" + data_event(body))
        body = dumps({"code": fault.code or code_for(500), "error": message})
        return fault.error_after, Step(0.0, data_event(body))
    if fault.stall_after is not None:
        hold = (fault.stall_ms if fault.stall_ms is not None else DEFAULT_STALL_MS) / 1000.0
        return fault.stall_after, Step(0.0, b"", STALL, hold=hold, event=False)
    return None


def insert_after(steps: list, count: int, step: Step, truncate: bool = False) -> list:
    """Insert `step` after the first `count` events (comments don't count); maybe drop the rest."""
    seen = 0
    for i, s in enumerate(steps):
        if seen == count:
            return steps[:i] + [step] + ([] if truncate else steps[i:])
        seen += s.event
    return steps + [step]


def add_pings(steps: list, every: int) -> list:
    out, seen = [], 0
    for step in steps:
        out.append(step)
        seen += step.event
        if step.event and not step.done and seen % every == 0:
            out.append(Step(0.0, PING, event=False))
    return out


def split_utf8(steps: list) -> list:
    """Write the first multi-byte UTF-8 character of the stream in two writes (cut inside it).

    The second write ends the event, so it is the one that counts: a ping, a malformed event or a
    cut placed "after N events" goes after the whole event, never between the two halves."""
    for i, step in enumerate(steps):
        cut = next((j + 1 for j, b in enumerate(step.data) if b >= 0xC0), None)
        if cut is not None:
            first = Step(step.delay, step.data[:cut], event=False)
            second = Step(0.0, step.data[cut:], event=step.event, done=step.done)
            return steps[:i] + [first, second] + steps[i + 1 :]
    return steps


class FaultStore:
    """Runtime faults by test id; `take()` hands out one use (a fault with `times` runs out)."""

    ANY = "*"

    def __init__(self):
        self._faults = {}  # test_id -> [Fault, remaining uses or None]

    def set(self, test_id: str, fault: Fault, times: int | None = None) -> None:
        self._faults[test_id] = [fault, times]

    def clear(self, test_id: str | None = None) -> None:
        if test_id is None:
            self._faults.clear()
        else:
            self._faults.pop(test_id, None)

    def take(self, test_id: str | None) -> Fault | None:
        """The fault for this request's test id (or the "*" one), counting one use."""
        for key in (test_id, self.ANY):
            slot = self._faults.get(key) if key else None
            if slot is None:
                continue
            fault, left = slot
            if left is not None:
                if left <= 1:
                    del self._faults[key]
                else:
                    slot[1] = left - 1
            return fault
        return None

    def snapshot(self) -> dict:
        return {k: {"fault": describe(f), "times": t} for k, (f, t) in self._faults.items()}


def describe(fault: Fault) -> dict:
    return {f.name: getattr(fault, f.name) for f in fields(Fault) if _given(getattr(fault, f.name))}


def _given(value) -> bool:
    """A field that says something: not None, not False. A zero does (`disconnect_after: 0`, `stall_ms: 0`);
    `value not in (None, False)` would drop it, as 0 == False."""
    return value is not None and value is not False
