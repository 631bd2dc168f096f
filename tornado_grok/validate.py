"""Checks of client request bodies; each failure is a 400 (or 413) whose message names the field."""

import base64
import binascii
import re

from .errors import GatewayError

_DATA_URI = re.compile(r"^data:image/(jpeg|jpg|png);base64,", re.IGNORECASE)
_ROLES = {"system", "user", "assistant", "tool", "developer", "function"}


def bad(message: str, code: str = "invalid_field") -> GatewayError:
    return GatewayError(400, message, code=code)


def _type_name(value) -> str:
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def need_string(body: dict, field: str, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise bad("field '%s' is required" % field, "missing_field")
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad("field '%s' must be a non-empty string, not %s" % (field, _type_name(value)))
    return value


def stream_flag(body: dict) -> bool:
    value = body.get("stream", False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad("field 'stream' must be a boolean, not %s" % _type_name(value))
    return value


def chat(body: dict) -> None:
    """An OpenAI chat completion request, as far as the gateway relies on it."""
    need_string(body, "model")
    messages = body.get("messages")
    if messages is None:
        raise bad("field 'messages' is required", "missing_field")
    if not isinstance(messages, list) or not messages:
        raise bad("field 'messages' must be a non-empty array, not %s" % (
            "an empty array" if messages == [] else _type_name(messages)))
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise bad("messages[%d] must be an object, not %s" % (i, _type_name(m)))
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise bad("messages[%d].role must be one of %s" % (i, ", ".join(sorted(_ROLES))))
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise bad("messages[%d].content must be a string or an array of parts, not %s" % (
                i, _type_name(content)))
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise bad("messages[%d].content[%d] must be an object with a 'type'" % (i, j))
    stream_flag(body)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad("field 'stream_options' must be an object, not %s" % _type_name(options))


def has_image(body: dict) -> bool:
    """True when any message carries an image_url content part (a vision request)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False  # called before chat() checks the body: a bad "messages" is its 400, not a 500
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    return True
    return False


def image_url(value, max_bytes: int) -> str:
    """A vision image: an https URL or a data:image/(jpeg|png);base64 URI of at most max_bytes."""
    if value is None:
        raise bad("field 'image_url' is required", "missing_field")
    if not isinstance(value, str) or not value:
        raise bad("field 'image_url' must be a string, not %s" % _type_name(value))
    if value.startswith("https://"):
        if len(value) > 8192 or any(c.isspace() for c in value):
            raise bad("field 'image_url' is not a valid https URL")
        return value
    match = _DATA_URI.match(value)
    if not match:
        raise bad("field 'image_url' must be an https:// URL or a data:image/jpeg or "
                  "data:image/png base64 URI")
    payload = value[match.end():]
    # The decoded size: 3 bytes per 4 characters, less the padding (an image of exactly the limit
    # passes; counting base64 characters would refuse images from 3/4 of it).
    if len(payload) * 3 // 4 - (payload[-2:].count("=") if payload[-1:] == "=" else 0) > max_bytes:
        raise GatewayError(413, "field 'image_url' holds an image larger than %d bytes" % max_bytes,
                           code="image_too_large")
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad("field 'image_url' is not valid base64 after the data: prefix")
    return value


def number(body: dict, field: str, kind=(int, float), low=None, high=None):
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise bad("field '%s' must be a number, not %s" % (field, _type_name(value)))
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad("field '%s' must be between %s and %s" % (field, low, high))
    return value


def choice(body: dict, field: str, allowed: tuple):
    value = body.get(field)
    if value is not None and value not in allowed:
        raise bad("field '%s' must be one of %s" % (field, ", ".join(allowed)))
    return value
