"""The usage a request is charged: the upstream's own, each count clamped to a sane maximum, or,
when a stream ended without usable usage, an estimate marked `"usage_estimated": true`.

The estimate needs no tokenizer (none that works offline is small enough to ship): text is counted
at BYTES_PER_TOKEN bytes a token. Prompt tokens come from the request body's strings, output tokens
from the bytes the relay sent on its fast path (StreamRelay.plain_bytes, plain_events: a counter
add per upstream read) less each event's envelope, which is measured once, here, on the last two
reads the fast path relayed (StreamRelay.plain_before, plain_sample; text_size).
`python bench/usage_estimate.py` prints the error against the mock's recordings (docs/ratelimits.md,
"Usage estimates").
"""

import math

import ujson

# The largest context xAI serves (grok-4-fast: 2,000,000 tokens) times 2: no single request can
# honestly report more in any count. Larger counts (2^63-1, say) are clamped to it.
MAX_TOKENS = 4_000_000
BYTES_PER_TOKEN = 4
# Tokens a chat template adds around each message or input item (role markers, separators).
PER_ITEM = 3

# What the first delta of a chat stream carries besides its text, counted in no sample.
FIRST_ROLE = b'"role":"assistant",'
_CHAT = ("prompt_tokens", "completion_tokens")
_RESPONSES = ("input_tokens", "output_tokens")
_COUNTS = _CHAT + _RESPONSES + ("total_tokens",)
_DETAILS = ("completion_tokens_details", "output_tokens_details", "prompt_tokens_details",
            "input_tokens_details")
# Outcomes after which the upstream had the request although it never answered 200 in time.
_SENT = ("client_gone", "drained", "timeout")


def settle(handler, usage, outcome: str | None) -> dict | None:
    """What `handler`'s request is charged: the upstream's usage made sane, an estimate (a stream
    the upstream accepted that ended without usage, or any answer whose usage is not counts), or
    None (nothing to charge: no generation, or the upstream refused the request)."""
    clean = sane(usage)
    if clean is not None:
        return clean
    relay = getattr(handler, "relay", None)
    if relay is not None:
        call = relay.call
        if handler.request.method != "POST" or call is None:
            return None  # a replay of a stored response generates nothing
        if call.status != 200 and not (call.status == 0 and outcome in _SENT):
            return None  # the upstream refused it, or was never reached
    elif usage is None:
        return None  # an answer without usage (models, images, a stored response read again)
    return estimate(handler.request.body, relay, responses_names(usage, relay, handler.request.path))


def sane(usage) -> dict | None:
    """The upstream's usage with every count a non-negative int of at most MAX_TOKENS, or None when
    it has no counts, or one that is not a count (negative, float, string, bool, null). A count it
    leaves out is not required (an embedding's usage has no completion_tokens); a missing
    total_tokens is the sum of the others."""
    if not isinstance(usage, dict):
        return None
    present = [name for name in _COUNTS if name in usage]
    if not present:
        return None
    out = dict(usage)
    out.pop("usage_estimated", None)  # only the gateway marks an estimate
    for name in present:
        value = usage[name]
        if not _is_count(value):
            return None
        out[name] = min(value, MAX_TOKENS)
    if "total_tokens" not in out:
        names = _RESPONSES if "input_tokens" in out or "output_tokens" in out else _CHAT
        out["total_tokens"] = min(MAX_TOKENS, out.get(names[0], 0) + out.get(names[1], 0))
    for name in _DETAILS:
        details = usage.get(name)
        if isinstance(details, dict):
            out[name] = {k: min(v, MAX_TOKENS) if _is_count(v) else 0 for k, v in details.items()}
    return out


def _is_count(value) -> bool:
    return type(value) is int and value >= 0


def responses_names(usage, relay, path: str) -> bool:
    if isinstance(usage, dict) and ("input_tokens" in usage or "output_tokens" in usage):
        return True
    if relay is not None:
        return relay.dialect.typed
    return path.endswith("/responses")


def estimate(body: bytes, relay, responses: bool) -> dict:
    """Estimated usage (in the API's own names) for a request body and the relay that streamed it."""
    prompt = prompt_tokens(body)
    output = output_tokens(relay) if relay is not None else 0
    names = _RESPONSES if responses else _CHAT
    return {names[0]: prompt, names[1]: output, "total_tokens": prompt + output, "usage_estimated": True}


def prompt_tokens(body: bytes) -> int:
    """The request's text (every string but the top-level `model` and `data:` URLs) at
    BYTES_PER_TOKEN bytes a token, plus PER_ITEM for each message or input item."""
    try:
        doc = ujson.loads(body) if body else None
    except ValueError:
        return min(MAX_TOKENS, math.ceil(len(body) / BYTES_PER_TOKEN))
    if not isinstance(doc, dict):
        return 0
    size = 0
    stack = [v for k, v in doc.items() if k != "model"]
    while stack:  # bounded: the body is at most max_body_size bytes
        value = stack.pop()
        kind = type(value)
        if kind is str:
            if not value.startswith("data:"):  # an image's base64 is not text the model reads
                size += len(value.encode("utf-8", "surrogatepass"))
        elif kind is dict:
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
    items = doc.get("messages") if "messages" in doc else doc.get("input")
    count = len(items) if isinstance(items, list) else 1
    return min(MAX_TOKENS, math.ceil(size / BYTES_PER_TOKEN) + PER_ITEM * count)


def output_tokens(relay) -> int:
    """The text the relay's fast path sent, at BYTES_PER_TOKEN bytes a token (see text_size)."""
    if not relay.plain_events:
        return 0
    typed = relay.dialect.typed
    text = text_size(relay.plain_bytes, relay.plain_events, (relay.plain_before, relay.plain_sample), typed)
    if not typed:
        text = max(0.0, text - len(FIRST_ROLE))  # the first chat delta also names the role
    return min(MAX_TOKENS, math.ceil(text / BYTES_PER_TOKEN))


def text_size(size: int, events: int, samples, typed: bool) -> float:
    """The bytes of text (chat's delta content, reasoning and tool arguments, or a Responses delta)
    in `events` events of `size` bytes, from `samples` (the last reads, as the fast path relayed
    them): each event is taken to have the envelope (the bytes that are not text) of the sampled
    events that carry text, except the sampled events without any (a finish chunk), counted as
    they are."""
    with_text, bare, bare_bytes = [], 0, 0
    for sample in samples:
        for event in (sample or b"").split(b"\n\n"):
            if not event:
                continue
            start = event.find(b"data: ")
            try:
                obj = ujson.loads(event[start + 6:]) if start >= 0 else None
            except ValueError:
                obj = None
            texts = (_responses_text(obj) if typed else _chat_text(obj)) if isinstance(obj, dict) else ()
            text = sum(_json_size(t) for t in texts)
            if text:
                with_text.append(len(event) + 2 - text)
            else:
                bare, bare_bytes = bare + 1, bare_bytes + len(event) + 2
    if not with_text:
        return 0.0  # the last reads carried no text: nothing to measure the envelope on
    envelope = sum(with_text) / len(with_text)
    return max(0.0, size - bare_bytes - max(0, events - bare) * envelope)


def _json_size(text: str) -> int:
    """The bytes a string takes inside JSON, quotes left out (the upstream's bytes are counted)."""
    return len(ujson.dumps(text, ensure_ascii=False, escape_forward_slashes=False).encode("utf-8", "surrogatepass")) - 2


def _responses_text(obj: dict) -> list:
    delta = obj.get("delta")
    return [delta] if isinstance(delta, str) else []


def _chat_text(obj: dict) -> list:
    texts = []
    choices = obj.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for name in ("content", "reasoning_content"):
            if isinstance(delta.get(name), str):
                texts.append(delta[name])
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                texts.append(function["arguments"])
    return texts
