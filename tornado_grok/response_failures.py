"""The upstream's failure texts in the Responses API, with the operator key taken out.

An upstream may quote the key it was sent (the operator's, `gateway.upstream.secrets`) in any text
of a failure: `response.error.message`, `response.incomplete_details`, an `error` event. Chat error
events reach the client through errors.upstream_text, which scrubs them (redact.scrub); these are
the Responses API's counterparts, for what the gateway relays rather than rewrites:

- `scrub_event(data, obj, secrets)`: a `response.failed` or `response.incomplete` event;
- `scrub_body(result, secrets)`: a whole Response object (POST /responses, GET /responses/{id})
  whose status is `failed` or `incomplete`;
- `error_fields(obj, secrets)`: the upstream's own `error` event, its `code`, `message` and `param`
  as sent (dialects.ResponsesDialect writes them).

Every string of the object is scrubbed after JSON decoding, so a key written with escapes
(\\u0078ai-...) is found too; an object in which nothing changed keeps the upstream's bytes. Never
applied to a delta or a completed response: once per failed stream or body, not per chunk.
"""

from .errors import json_bytes
from .redact import scrub

FAILED_STATUSES = ("failed", "incomplete")


def scrub_value(value, secrets: tuple):
    """(value with every string in it scrubbed, whether anything changed)."""
    kind = type(value)
    if kind is str:
        clean = scrub(value, secrets)
        return clean, clean != value
    if kind is dict:
        changed = False
        out = {}
        for name, item in value.items():
            clean_name, name_changed = scrub_value(name, secrets)
            clean_item, item_changed = scrub_value(item, secrets)
            out[clean_name] = clean_item
            changed = changed or name_changed or item_changed
        return (out, True) if changed else (value, False)
    if kind is list:
        pairs = [scrub_value(item, secrets) for item in value]
        if any(changed for _, changed in pairs):
            return [item for item, _ in pairs], True
        return value, False
    return value, False


def scrub_event(data: bytes, obj: dict, secrets: tuple) -> bytes:
    """A terminal failure event's data (`obj` is it parsed): the upstream's bytes, or re-encoded
    without the key when it quoted it."""
    if not secrets:
        return data
    clean, changed = scrub_value(obj, secrets)
    return json_bytes(clean) if changed else data


def scrub_body(result, secrets: tuple):
    """A whole Response object as the client may see it: scrubbed when it failed or is incomplete."""
    if secrets and type(result) is dict and result.get("status") in FAILED_STATUSES:
        return scrub_value(result, secrets)[0]
    return result


def error_fields(obj: dict, secrets: tuple) -> dict | None:
    """The `code`, `message` and `param` of the upstream's Responses `error` event, as sent (the
    key scrubbed), or None when its message is not a string (nothing an SDK could show)."""
    if type(obj.get("message")) is not str:
        return None
    fields = {name: obj.get(name) for name in ("code", "message", "param")}
    return scrub_value(fields, secrets)[0] if secrets else fields
