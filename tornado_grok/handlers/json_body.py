"""The reading of a request's JSON body and its checks: a JSON object, valid Unicode (no lone
surrogate escape), finite numbers (naming the path of one that is not), and the 413 of a body over
its limit."""

import re

import ujson

from ..errors import GatewayError

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_MAYBE_NON_FINITE = re.compile(rb"NaN|Infinity|[eE]\+?[0-9]{3}|[0-9]{309}")


def json_object(raw: bytes) -> dict:
    """The request body `raw` as a JSON object, or a 400 that names the problem."""
    if not raw.strip():
        raise GatewayError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        body = ujson.loads(raw)
    except (ValueError, OverflowError) as e:
        raise GatewayError(400, "the request body is not valid JSON (%s)" % e, code="invalid_json")
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object, not %s" % _json_type(body),
                           code="invalid_json")
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(body):
        raise GatewayError(400, "the request body has a lone UTF-16 surrogate escape (\\ud800-\\udfff): "
                           "not valid Unicode", code="invalid_json")
    # Only a NaN/Infinity literal, a 3-digit exponent or 309+ digits can parse as a non-finite
    # float: one C-level scan of the bytes decides whether the walk over the parsed body is needed.
    where = _non_finite(body) if _MAYBE_NON_FINITE.search(raw) else None
    if where is not None:
        # ujson reads NaN, Infinity and 1e400 as floats; relayed, they would be invalid JSON
        # ("temperature":NaN) and they pass every range check (NaN < 0 is false).
        raise GatewayError(400, "field '%s' is not a finite number (NaN, Infinity and numbers too large "
                           "for a double are not JSON)" % where, code="invalid_number")
    return body


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, "the request body is larger than the limit of %d bytes" % limit,
                        code="body_too_large")


def _lone_surrogate(body: dict) -> bool:
    """Whether a string of the parsed body holds half a surrogate pair (pairs decode to one character)."""
    try:
        ujson.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _non_finite(body: dict) -> str | None:
    """Where the parsed body holds a NaN or an infinity (as `messages[0].temperature`), else None.

    One walk over the parsed containers, linear in what the parser already built (a stack, not
    recursion: ujson nests up to 1024 deep); the path is worked out only when there is one to name.
    """
    stack = [body]
    pop, push = stack.pop, stack.append
    while stack:
        value = pop()
        for item in (value.values() if type(value) is dict else value):
            kind = type(item)
            if kind is dict or kind is list:
                push(item)
            elif kind is float and item - item != 0.0:  # inf - inf and nan - nan are NaN
                return _path_of(body, item)
    return None


def _path_of(body: dict, target: float) -> str:
    """The path of the value `target` (by identity) in body, as error messages name fields."""
    stack = [(body, "")]
    while stack:
        value, path = stack.pop()
        for name, item in (value.items() if type(value) is dict else enumerate(value)):
            if type(name) is int:
                where = "%s[%d]" % (path, name)
            else:
                where = (path + "." if path else "") + (name if len(name) <= 64 else name[:64] + "...")
            if item is target:
                return where
            if type(item) is dict or type(item) is list:
                stack.append((item, where))
    return "(the body)"


def _json_type(value) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)
