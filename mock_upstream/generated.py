"""Responses made up on the spot: the synthetic load generator, the paced generator, the default answer.

`synthetic` is byte-compatible with shared/bench/mock_sse.js (same parameters, defaults, limits,
text, chunk layout, usage numbers) but for where usage goes (in its own final chunk, as xAI sends
it): `chunks=N delay=MS size=CHARS` in the last user message. It is
the path load tests use, so the event bytes are built once per request by concatenation, with no
json.dumps per chunk, and back-to-back chunks are written in batches of 256 like mock_sse.js.
"""

import functools
import math
import re
import time

from mock_upstream.plan import DONE_BYTES, Plan, Step, dumps

MAX_CHUNKS = 100_000
MAX_SIZE = 65_536
MAX_DELAY = 600_000
BATCH = 256
RING = 16
ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ "
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DEFAULT_DELAY = 0.005  # seconds between the default answer's word chunks, at speed 1
DEFAULT_CREATED = 1767225600  # a fixed `created` keeps the default answer deterministic

_PARAM = {k: re.compile(r"(?:^|\s)" + k + r"\s*=\s*(-?\d+)") for k in ("chunks", "delay", "size")}
_TAG = re.compile(r"\[mock:[^\]]*\]")


def message_text(message) -> str:
    """A message's text: string content, or its text parts joined by spaces (as mock_sse.js)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] if isinstance(p, dict) and isinstance(p.get("text"), str) else "" for p in content)
    return ""


def last_user_text(body: dict) -> str:
    """The last user message's text: of `messages` (chat) or of `input` (the Responses API: a string,
    or items whose user messages have input_text parts; without one, the last function_call_output)."""
    if "messages" not in body and "input" in body:
        return last_input_text(body.get("input"))
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def last_input_text(items) -> str:
    if isinstance(items, str):
        return items
    items = items if isinstance(items, list) else []
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            return message_text(item)
    for item in reversed(items):
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            output = item.get("output")
            return output if isinstance(output, str) else ""
    return ""


def wants_synthetic(body: dict) -> bool:
    return _PARAM["chunks"].search(last_user_text(body)) is not None


def _param(text: str, key: str, default: int, high: int) -> int:
    match = _PARAM[key].search(text)
    return default if match is None else min(high, max(0, int(match.group(1))))


@functools.lru_cache(maxsize=4096)
def chunk_text(size: int, k: int) -> str:
    return "".join(ALPHA[(i + k) % len(ALPHA)] for i in range(size))


@functools.lru_cache(maxsize=4096)
def _event_tail(size: int, k: int) -> bytes:
    """Everything of a synthetic content event after its per-request head (a pure function: cached)."""
    return b'{"content":' + dumps(chunk_text(size, k)) + b'},"finish_reason":null}]}\n\n'


def usage_for(body: dict, completion_tokens: int) -> dict:
    """mock_sse.js's rough numbers: one token per 4 prompt characters, at least one."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    prompt = max(1, math.ceil(sum(len(message_text(m)) for m in messages) / 4))
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def synthetic(body: dict, batch: bool = True) -> Plan:
    """The mock_sse.js stream (or completion) for this body. `batch=False` gives one step per chunk."""
    text = last_user_text(body)
    chunks = _param(text, "chunks", 20, MAX_CHUNKS)
    delay = _param(text, "delay", 0, MAX_DELAY) / 1000.0
    size = _param(text, "size", 8, MAX_SIZE)
    model = body.get("model") if isinstance(body.get("model"), str) else "bench"
    created = int(time.time())
    usage = usage_for(body, chunks)
    if not body.get("stream"):
        content = "".join(chunk_text(size, k % RING) for k in range(chunks))
        completion = {"id": "chatcmpl-bench", "object": "chat.completion", "created": created, "model": model,
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                      "usage": usage}
        wait = delay * chunks if delay > 0 and chunks > 0 else 0.0
        return Plan(200, {}, False, dumps(completion), wait)
    head = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":%d,"model":%s,"choices":[{"index":0,"delta":' % (
        created, dumps(model))
    events = [head + _event_tail(size, k) for k in range(min(RING, chunks))]
    tail = head + b'{},"finish_reason":"stop"}]}\n\n'
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        # As xAI (and OpenAI) send it: usage in a chunk of its own, with no choices. (mock_sse.js puts
        # it on the finish chunk instead, which a relay cannot hide from a client that did not ask.)
        tail += b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":%d,"model":%s,' \
                b'"choices":[],"usage":%s}\n\n' % (created, dumps(model), dumps(usage))
    tail += DONE_BYTES
    return Plan(200, dict(SSE_HEADERS), True, steps=_steps(events, chunks, delay, tail, batch))


def _steps(events: list, chunks: int, delay: float, tail: bytes, batch: bool) -> list:
    if delay == 0 and batch:
        steps = []
        for start in range(0, chunks, BATCH):
            steps.append(Step(0.0, b"".join(events[k % RING] for k in range(start, min(chunks, start + BATCH)))))
        return steps + [Step(0.0, tail, done=True)]
    if chunks == 0:
        return [Step(delay, tail, done=True)]
    steps = [Step(delay, events[k % RING]) for k in range(chunks)]
    return steps + [Step(0.0, tail, done=True)]


def default_answer(body: dict, completion_id: str) -> Plan:
    """A short deterministic reply derived from the prompt, streamed word by word, with usage."""
    prompt = _TAG.sub("", last_user_text(body)).split()
    echo = " ".join(prompt[:12]) + (" …" if len(prompt) > 12 else "")
    words = ("Mock answer to: " + (echo or "(an empty prompt)")).split(" ")
    model = body.get("model") if isinstance(body.get("model"), str) else ""
    usage = usage_for(body, len(words))
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": DEFAULT_CREATED, "model": model}
    if not body.get("stream"):
        message = {"role": "assistant", "content": " ".join(words)}
        completion = dict(base, object="chat.completion",
                          choices=[{"index": 0, "message": message, "finish_reason": "stop"}], usage=usage)
        return Plan(200, {}, False, dumps(completion), DEFAULT_DELAY * len(words))
    steps = []
    for i, word in enumerate(words):
        delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
        steps.append(Step(DEFAULT_DELAY, b"data: " + dumps(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])) + b"\n\n"))
    steps.append(Step(0.0, b"data: " + dumps(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])) + b"\n\n"))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        steps.append(Step(0.0, b"data: " + dumps(dict(base, choices=[], usage=usage)) + b"\n\n"))
    steps.append(Step(0.0, DONE_BYTES, done=True))
    return Plan(200, dict(SSE_HEADERS), True, steps=steps)


PACED_WORDS = ("The", " model", " writes", " one", " token", " after", " another", " at", " a", " pace", " drawn",
               " from", " the", " scenario", "'s", " distributions", ".")


@functools.lru_cache(maxsize=256)
def _paced_tail(start: int, count: int, first: bool) -> bytes:
    """The content of one paced chunk (tokens start..start+count of the word ring) and the event's end."""
    text = "".join(PACED_WORDS[i % len(PACED_WORDS)] for i in range(start, start + count))
    return (b'{"role":"assistant","content":' if first else b'{"content":') + dumps(text) + b'},"finish_reason":null}]}\n\n'


def paced(body: dict, pacing, completion_id: str) -> Plan:
    """A stream (or completion) timed by one draw of the scenario's pacing (pacing.py): the first
    chunk after the drawn TTFT, then one chunk of `chunk_tokens` tokens per drawn gap, capped by the
    request's max_tokens / max_completion_tokens (then finish_reason "length")."""
    draw = pacing.draw()
    tokens, finish = draw.output_tokens, "stop"
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 < cap < tokens:
        tokens, finish = cap, "length"
    size = pacing.chunk_tokens
    starts = range(0, tokens, size)
    gaps = (draw.ttft,) + draw.gaps[: len(starts) - 1]
    model = body.get("model") if isinstance(body.get("model"), str) else ""
    usage = usage_for(body, tokens)
    if not body.get("stream"):
        content = "".join(PACED_WORDS[i % len(PACED_WORDS)] for i in range(tokens))
        completion = {"id": completion_id, "object": "chat.completion", "created": DEFAULT_CREATED, "model": model,
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
                      "usage": usage}
        return Plan(200, {}, False, dumps(completion), sum(gaps))
    head = b'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"choices":[{"index":0,"delta":' % (
        dumps(completion_id), DEFAULT_CREATED, dumps(model))
    steps = [Step(gap, head + _paced_tail(start % len(PACED_WORDS), min(size, tokens - start), start == 0))
             for gap, start in zip(gaps, starts)]
    steps.append(Step(0.0, head + b'{},"finish_reason":%s}]}\n\n' % dumps(finish)))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):  # as xAI: a chunk of its own, no choices
        usage_chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": DEFAULT_CREATED,
                       "model": model, "choices": [], "usage": usage}
        steps.append(Step(0.0, b"data: " + dumps(usage_chunk) + b"\n\n"))
    steps.append(Step(0.0, DONE_BYTES, done=True))
    return Plan(200, dict(SSE_HEADERS), True, steps=steps)


__all__ = ["default_answer", "last_user_text", "message_text", "paced", "synthetic", "wants_synthetic"]
