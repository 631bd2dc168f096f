"""Small client-side helpers for the wire tests: raw POSTs and SSE splitting."""

import base64
import hashlib
import hmac
import json
import re

import requests

SEED_PROMPT = "Write a short story about a space adventure"
SEED_MODEL = "grok-4-1-fast-non-reasoning"
# The seed's model is an alias: the mock sees the upstream name, the client gets its own name back.
UPSTREAM_MODEL = b'"model":"grok-4.20-non-reasoning"'
CLIENT_MODEL = b'"model":"grok-4-1-fast-non-reasoning"'


# An id as the gateway hands it out: the upstream's id, a dot, a 26-character tag (tornado_grok/ownership.py).
BOUND_ID = re.compile(rb'"([A-Za-z0-9][A-Za-z0-9._:-]*?)\.([a-z2-7]{26})"')


def bound_ids(client: bytes) -> dict:
    """{upstream id: the id the client was given} for every bound id in a client's bytes."""
    return {m.group(1): m.group(0)[1:-1] for m in BOUND_ID.finditer(client)}


def client_view(upstream: bytes, client: bytes) -> bytes:
    """The upstream's bytes with each of its ids as the gateway bound it in the client's bytes: what
    a perfect relay that binds ids to keys would have sent."""
    for upstream_id, bound in bound_ids(client).items():
        upstream = upstream.replace(b'"' + upstream_id + b'"', b'"' + bound + b'"')
    return upstream


def unbound(client: bytes) -> bytes:
    """A client's bytes with every bound id back to the upstream's id (to compare what two keys got)."""
    return BOUND_ID.sub(lambda m: b'"' + m.group(1) + b'"', client)


def bind(gateway, key: str, kind: str, upstream_id: str) -> str:
    """The id the gateway hands `key` for the upstream's `upstream_id`, computed from the documented
    form (docs/api.md, "What a key can see"), independently of the gateway's code: the id, a dot, and the first 128 bits
    of HMAC-SHA256(secret, kind NUL sha256(key) NUL upstream NUL id) in lowercase unpadded base32."""
    with open(gateway.id_secret_file) as f:
        secret = bytes.fromhex(f.read().strip())
    digest = hashlib.sha256(key.encode()).hexdigest()
    mac = hmac.new(secret, "\0".join((kind, digest, "", upstream_id)).encode(), hashlib.sha256).digest()[:16]
    return upstream_id + "." + base64.b32encode(mac).decode().rstrip("=").lower()


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
