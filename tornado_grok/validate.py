"""Checks of client request bodies; each failure is a 400 (or 413) whose message names the field."""

import base64
import binascii
import re

from .errors import GatewayError

_DATA_URI = re.compile(r"^data:image/(jpeg|jpg|png);base64,", re.IGNORECASE)
# An id that goes into an upstream path: 1-128 characters, a letter or digit first, then letters,
# digits, '.', '_', ':' or '-' (model names like grok-4.3, ft:...:abc, ids like resp_..., file-...).
# Together with "no '..' anywhere" nothing of it can be read as another path, a query or an escape.
PATH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
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


def path_id(value, field: str) -> str:
    """`value` when it may go into an upstream path (PATH_ID, no '..'), else a 400 naming `field`.

    Every id taken from a request (a path parameter, a body field) and put into an upstream path
    goes through here first; upstream.join_path then escapes it. The value is never echoed back:
    it may be anything, a key included.
    """
    if not isinstance(value, str) or not PATH_ID.fullmatch(value) or ".." in value:
        raise bad("%s must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter "
                  "or digit, with no '..'" % field, "invalid_id")
    return value


_ASCII_INT = re.compile(r"[0-9]+")
CONTENT_LENGTH_DIGITS = 18  # under 2**63: any length the gateway could take, and then some


def ascii_digits(text, max_digits: int) -> int | None:
    """The value of `text` when it is 1 to max_digits ASCII digits (nothing else: no sign, no
    space, no "²" or "٣", which str.isdigit and int() accept), else None."""
    if type(text) is not str or len(text) > max_digits or not _ASCII_INT.fullmatch(text):
        return None
    return int(text)


def ascii_int(text, name: str, max_digits: int, code: str = "invalid_field") -> int:
    """The one parser of an integer in a header or a query parameter: `text` as ascii_digits reads
    it, else a 400 naming `name`. The value is not echoed back."""
    value = ascii_digits(text, max_digits)
    if value is None:
        raise bad("%s must be a whole number written with 1 to %d ASCII digits (0-9)" % (name, max_digits), code)
    return value


def content_length(text) -> int:
    """A request's Content-Length header: ASCII digits only (a repeated header, which tornado joins
    with commas, is refused too), else a 400."""
    return ascii_int(text, "header Content-Length", CONTENT_LENGTH_DIGITS, "invalid_header")


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
    if not payload:  # valid base64 of nothing: no image to send upstream
        raise bad("field 'image_url' holds no image after the data: prefix")
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
    if value - value != 0:  # NaN or an infinity (json_body refuses them already; NaN passes any range)
        raise bad("field '%s' must be a finite number" % field)
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad("field '%s' must be between %s and %s" % (field, low, high))
    return value


def choice(body: dict, field: str, allowed: tuple):
    value = body.get(field)
    if value is not None and value not in allowed:
        raise bad("field '%s' must be one of %s" % (field, ", ".join(allowed)))
    return value


# -- bodies of the relayed endpoints (routes.py): only what the gateway relies on, so a wrong type
# is a 400 naming the field here instead of an upstream error; anything else passes through.

def tokenize(body: dict) -> None:
    """POST /tokenize-text: {"text", "model", "user"?}."""
    need_string(body, "model")
    text = body.get("text")
    if not isinstance(text, str):
        raise bad("field 'text' is required and must be a string" if text is None else
                  "field 'text' must be a string, not %s" % _type_name(text),
                  "missing_field" if text is None else "invalid_field")


def embeddings(body: dict) -> None:
    """POST /embeddings: {"model", "input": string or array, "encoding_format"?, "dimensions"?}."""
    need_string(body, "model")
    value = body.get("input")
    if value is None:
        raise bad("field 'input' is required", "missing_field")
    if not isinstance(value, (str, list)) or value == []:
        raise bad("field 'input' must be a string or a non-empty array, not %s" % (
            "an empty array" if value == [] else _type_name(value)))
    choice(body, "encoding_format", ("float", "base64"))
    number(body, "dimensions", int, 1, 100_000)


def image_edit(body: dict) -> None:
    """POST /images/edits (JSON, as xAI takes it): {"prompt", "image": {"url"} or a URL, "model"?, ...}."""
    need_string(body, "prompt")
    image = body.get("image")
    if image is None:
        raise bad("field 'image' is required", "missing_field")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:image/")):
        raise bad("field 'image' must be an object with a 'url' (an http(s) URL or a data:image URI)")
    need_string(body, "model", required=False)
    number(body, "n", int, 1, 10)
    choice(body, "response_format", ("url", "b64_json"))


def responses(body: dict) -> None:
    """A Responses API create request, as far as the gateway relies on it (the upstream checks the rest)."""
    need_string(body, "model")
    value = body.get("input")
    if value is None:
        raise bad("field 'input' is required", "missing_field")
    if not isinstance(value, (str, list)) or value == [] or value == "":
        raise bad("field 'input' must be a non-empty string or array, not %s" % (
            "an empty value" if value in ([], "") else _type_name(value)))
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise bad("input[%d] must be an object, not %s" % (i, _type_name(item)))
    stream_flag(body)
    need_string(body, "previous_response_id", required=False)


def responses_has_image(body: dict) -> bool:
    """True when an input message carries an input_image part (a vision request)."""
    items = body.get("input")
    if not isinstance(items, list):
        return False
    for item in items:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "input_image":
                    return True
    return False
