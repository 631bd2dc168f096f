"""Small client-side helpers for the wire tests: raw POSTs and SSE splitting."""

import json

import requests

SEED_PROMPT = "Write a short story about a space adventure"
SEED_MODEL = "grok-4-1-fast-non-reasoning"
# The seed's model is an alias: the mock sees the upstream name, the client gets its own name back.
UPSTREAM_MODEL = b'"model":"grok-4.20-non-reasoning"'
CLIENT_MODEL = b'"model":"grok-4-1-fast-non-reasoning"'


def chat_body(content=SEED_PROMPT, model=SEED_MODEL, stream=True, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}
    body.update(extra)
    return body


def post(url, body, headers, timeout=30, raw_body=None):
    """POSTs and reads the whole response; returns the requests.Response with .content filled."""
    data = raw_body if raw_body is not None else json.dumps(body)
    r = requests.post(url, data=data, headers=headers, timeout=timeout, stream=True)
    r._content = b"".join(r.raw.stream(1024, decode_content=False)) if r.raw else b""
    return r


def events(raw: bytes) -> list[bytes]:
    """The blocks of an SSE body (each without its blank line), comments included."""
    assert raw.endswith(b"\n\n") or not raw, raw[-80:]
    return [block for block in raw.split(b"\n\n") if block]


def data_events(raw: bytes) -> list[bytes]:
    return [b for b in events(raw) if not b.startswith(b":")]


def contents(raw: bytes) -> str:
    text = []
    for block in data_events(raw):
        payload = block[len(b"data: "):]
        if payload == b"[DONE]":
            break
        obj = json.loads(payload)
        for choice in obj.get("choices", []):
            text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


def direct(mock, body, headers=None, path="/chat/completions"):
    """The same request straight to the mock upstream: the bytes a perfect relay would pass on."""
    h = {"Authorization": "Bearer direct", "Content-Type": "application/json"}
    h.update(headers or {})
    return post(mock.base + path, body, h)
