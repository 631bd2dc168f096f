"""The Responses API in the mock: Response objects, their event sequences, the default answer and
the synthetic load stream for /v1/responses, and the store behind GET/DELETE /v1/responses/{id}.

Event sequences follow the OpenAI/xAI Responses stream: response.created, response.in_progress,
per output item output_item.added ... output_item.done (a message's text as
content_part.added, output_text.delta*, output_text.done, content_part.done), then
response.completed; every event has `type` and a `sequence_number` counted from 0.
"""

import math
import re
import time
from collections import OrderedDict

from mock_upstream.generated import (DEFAULT_CREATED, DEFAULT_DELAY, MAX_CHUNKS, MAX_DELAY, MAX_SIZE, RING, SSE_HEADERS,
                                     _TAG, _param, chunk_text, last_user_text)
from mock_upstream.plan import Plan, Step, dumps

_SEQUENCE = re.compile(rb'"sequence_number":(\d+)')


def usage(input_tokens: int, output_tokens: int, reasoning_tokens: int = 0) -> dict:
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens}


def input_tokens(body: dict) -> int:
    """One token per 4 characters of the last input text, at least one (like the chat mock)."""
    return max(1, math.ceil(len(last_user_text(body)) / 4))


def response_object(response_id: str, model: str, status: str, output: list, usage_obj: dict | None,
                    body: dict | None = None, created_at: int = DEFAULT_CREATED, **extra) -> dict:
    """A Response with the fields the SDKs read; `body` supplies the request's echoed settings."""
    body = body or {}
    obj = {"id": response_id, "object": "response", "created_at": created_at, "status": status,
           "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
           "max_output_tokens": body.get("max_output_tokens"), "model": model, "output": output,
           "parallel_tool_calls": True, "previous_response_id": body.get("previous_response_id"),
           "reasoning": None, "store": body.get("store", True), "temperature": body.get("temperature"),
           "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": body.get("tools") or [],
           "top_p": None, "usage": usage_obj, "metadata": {}}
    obj.update(extra)
    return obj


def message_item(item_id: str, text: str, status: str = "completed") -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


class Events:
    """Builds one Responses event sequence, numbering the events as they are added."""

    def __init__(self):
        self.events: list = []  # (type, payload dict)

    def add(self, kind: str, **fields) -> None:
        fields = dict({"type": kind}, **fields)
        fields["sequence_number"] = len(self.events)
        self.events.append((kind, fields))

    def message(self, index: int, item_id: str, pieces: list) -> dict:
        """A message item streamed in text pieces; returns the finished item."""
        common = {"item_id": item_id, "output_index": index, "content_index": 0}
        self.add("response.output_item.added", output_index=index,
                 item=dict(message_item(item_id, "", "in_progress"), content=[]))
        self.add("response.content_part.added", **common,
                 part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        for piece in pieces:
            self.add("response.output_text.delta", **common, delta=piece, logprobs=[])
        text = "".join(pieces)
        item = message_item(item_id, text)
        self.add("response.output_text.done", **common, text=text, logprobs=[])
        self.add("response.content_part.done", **common, part=item["content"][0])
        self.add("response.output_item.done", output_index=index, item=item)
        return item

    def lines(self, delay_ms: float = 0.0) -> list:
        """As mock-recording/1 lines (for writing recordings)."""
        return [{"delay_ms": delay_ms, "event": kind, "data": payload} for kind, payload in self.events]

    def steps(self, delay: float) -> list:
        return [Step(delay, encode(kind, payload), done=kind in TERMINAL)
                for kind, payload in self.events]


TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def encode(kind: str, payload: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


def default_answer(body: dict, response_id: str) -> tuple:
    """The deterministic answer to any input, word by word: (Plan, the stored Response, its steps)."""
    prompt = _TAG.sub("", last_user_text(body)).split()
    echo = " ".join(prompt[:12]) + (" …" if len(prompt) > 12 else "")
    words = ("Mock answer to: " + (echo or "(an empty prompt)")).split(" ")
    model = body.get("model") if isinstance(body.get("model"), str) else ""
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    events = Events()
    start = response_object(response_id, model, "in_progress", [], None, body)
    events.add("response.created", response=start)
    events.add("response.in_progress", response=start)
    item = events.message(0, "msg_" + response_id, pieces)
    final = response_object(response_id, model, "completed", [item], usage(input_tokens(body), len(words)), body,
                            completed_at=DEFAULT_CREATED)
    events.add("response.completed", response=final)
    steps = events.steps(DEFAULT_DELAY)
    if body.get("stream"):
        return Plan(200, dict(SSE_HEADERS), True, steps=steps, api="responses"), final, steps
    return Plan(200, {}, False, dumps(final), DEFAULT_DELAY * len(words), api="responses"), final, steps


def synthetic(body: dict) -> Plan:
    """The load stream (`chunks=N delay=MS size=CHARS`, as the chat synthetic generator) as Responses
    events: the same N text deltas of `size` characters, built by concatenation."""
    text = last_user_text(body)
    chunks = _param(text, "chunks", 20, MAX_CHUNKS)
    delay = _param(text, "delay", 0, MAX_DELAY) / 1000.0
    size = _param(text, "size", 8, MAX_SIZE)
    model = body.get("model") if isinstance(body.get("model"), str) else "bench"
    rid, item_id = "resp_bench", "msg_bench"
    content = "".join(chunk_text(size, k % RING) for k in range(chunks))
    final = response_object(rid, model, "completed", [message_item(item_id, content)],
                            usage(input_tokens(body), chunks), body, created_at=int(time.time()))
    if not body.get("stream"):
        wait = delay * chunks if delay > 0 and chunks > 0 else 0.0
        return Plan(200, {}, False, dumps(final), wait, api="responses")
    start = dict(final, status="in_progress", output=[], usage=None)
    head = [encode("response.created", {"type": "response.created", "response": start, "sequence_number": 0}),
            encode("response.in_progress", {"type": "response.in_progress", "response": start, "sequence_number": 1}),
            encode("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                  "item": dict(message_item(item_id, "", "in_progress"), content=[]),
                                                  "sequence_number": 2}),
            encode("response.content_part.added", {"type": "response.content_part.added", "item_id": item_id,
                                                   "output_index": 0, "content_index": 0,
                                                   "part": {"type": "output_text", "text": "", "annotations": [],
                                                            "logprobs": []}, "sequence_number": 3})]
    delta = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_bench",'
             b'"output_index":0,"content_index":0,"delta":')
    texts = [dumps(chunk_text(size, k)) for k in range(min(RING, chunks))]
    events = [delta + texts[k % RING] + b',"logprobs":[],"sequence_number":%d}\n\n' % (4 + k) for k in range(chunks)]
    n = 4 + chunks
    part = final["output"][0]["content"][0]
    common = {"item_id": item_id, "output_index": 0, "content_index": 0}
    tail = [encode("response.output_text.done", dict({"type": "response.output_text.done"}, **common, text=content,
                                                     logprobs=[], sequence_number=n)),
            encode("response.content_part.done", dict({"type": "response.content_part.done"}, **common, part=part,
                                                      sequence_number=n + 1)),
            encode("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                 "item": final["output"][0], "sequence_number": n + 2}),
            encode("response.completed", {"type": "response.completed", "response": final, "sequence_number": n + 3})]
    if delay == 0:
        steps = [Step(0.0, b"".join(head))]
        for start_at in range(0, chunks, 256):
            steps.append(Step(0.0, b"".join(events[start_at:start_at + 256])))
    else:
        steps = [Step(delay if i == 0 else 0.0, e) for i, e in enumerate(head)]
        steps += [Step(delay if k else 0.0, e) for k, e in enumerate(events)]
    steps.append(Step(0.0, b"".join(tail), done=True))
    return Plan(200, dict(SSE_HEADERS), True, steps=steps, api="responses")


def after(steps: list, starting_after: int | None) -> list:
    """The stored steps whose events come after sequence number `starting_after` (all without it)."""
    if starting_after is None:
        return list(steps)
    out = []
    for step in steps:
        found = _SEQUENCE.search(step.data)
        if found is None or int(found.group(1)) > starting_after:
            out.append(step)
    return out


class Store:
    """Stored responses by id, for GET and DELETE /v1/responses/{id}: the Response object and the
    steps of its stream; the most recent `limit` kept."""

    def __init__(self, limit: int = 1000):
        self.limit = limit
        self._items: OrderedDict = OrderedDict()

    def put(self, response: dict, steps: list) -> None:
        self._items[response["id"]] = (response, steps)
        self._items.move_to_end(response["id"])
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, response_id: str):
        return self._items.get(response_id)

    def delete(self, response_id: str) -> bool:
        return self._items.pop(response_id, None) is not None
