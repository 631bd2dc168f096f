"""The declarative table of the upstream endpoints the gateway relays as they are, one row each.

A row says: the method, the gateway path under /api/v1 with typed ids (`{model}`, `{request_id}`),
the fixed upstream path the ids are put into, whether the answer streams, and which body check the
request must pass. Any 2xx upstream status is relayed with its body; anything else is an error. One handler
(handlers/passthrough.py) reads the table; a new xAI endpoint is one more row.

Nothing outside the table reaches the upstream: the upstream path of a request is always a row's
template, and an id is first checked against its type's strict pattern (400 otherwise), then
percent-escaped into it, so no client input ever chooses an upstream path. `GET /v1/api-key`
(it describes the operator's own key) is deliberately absent.
"""

import re
from dataclasses import dataclass
from typing import Callable

from . import ownership, validate
from .errors import GatewayError

# The id types a path may hold: each a strict pattern for one path segment.
ID_TYPES = {
    # Model names and aliases: grok-4.20-non-reasoning, grok-2-image-1212, v1:embed-1.
    "model": re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z"),
    # Request ids of deferred completions (UUIDs, or the mock's own), as the upstream gave them.
    "request_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z"),
}

# The id types that name an object some key created: the client sees them bound to its key
# (ownership.py), and a row's handler opens them first, so another key's id is a 404 that never
# reaches the upstream. The value: the kind the binding is made for, and what a 404 calls it.
OWNED = {
    "request_id": (ownership.DEFERRED, "deferred completion"),
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """One allowed endpoint."""

    method: str
    path: str  # under /api/v1, with {type} placeholders
    upstream: str  # under the upstream base URL, with the same placeholders
    stream: bool = False  # the answer may be an event stream (a body's "stream": true)
    body: Callable | None = None  # the request body's check (validate.py); None: no body is sent

    def __post_init__(self):
        for name in _PLACEHOLDER.findall(self.path) + _PLACEHOLDER.findall(self.upstream):
            if name not in ID_TYPES:
                raise ValueError("route %s %s: unknown id type {%s}" % (self.method, self.path, name))
        if sorted(_PLACEHOLDER.findall(self.path)) != sorted(_PLACEHOLDER.findall(self.upstream)):
            raise ValueError("route %s %s: the upstream path must use the same ids" % (self.method, self.path))

    def pattern(self) -> str:
        """The tornado URL pattern: one named group per id, matching one path segment."""
        escaped = re.sub(r"[^A-Za-z0-9/_{}-]", lambda m: "\\" + m.group(0), "/api/v1" + self.path)
        return _PLACEHOLDER.sub(lambda m: "(?P<%s>[^/]+)" % m.group(1), escaped)

    def upstream_path(self, ids: dict) -> str:
        """The upstream path for these ids, each checked against its type and escaped into place."""
        for name, value in ids.items():
            check_id(name, value)
        # A checked id is made only of characters that need no escaping in a path (validate.PATH_ID),
        # and UpstreamClient.call refuses any path that is not such segments (upstream.checked_path).
        return _PLACEHOLDER.sub(lambda m: ids[m.group(1)], self.upstream)


def check_id(kind: str, value: str) -> str:
    """`value` if it is a valid id of this type, else a 400 that names the type.

    validate.path_id is the one rule for every id that goes into an upstream path; a type may only
    narrow it."""
    validate.path_id(value, kind)
    if not ID_TYPES[kind].match(value):
        raise GatewayError(400, "invalid %s in the path: expected 1-128 characters of %s" % (
            kind, "letters, digits and . _ : -" if kind == "model" else "letters, digits, _ and -"),
            code="invalid_id")
    return value


# The table. Chat completions, images/generations, vision and models have handlers of their own
# (they rewrite requests); these are relayed as they are, model aliases applied.
ROUTES = (
    # 202 (not ready yet) and 200 (the chat.completion) both reach the client with their status.
    Route("GET", "/chat/deferred-completion/{request_id}", "/chat/deferred-completion/{request_id}"),
    Route("POST", "/tokenize-text", "/tokenize-text", body=validate.tokenize),
    Route("POST", "/embeddings", "/embeddings", body=validate.embeddings),
    Route("POST", "/images/edits", "/images/edits", body=validate.image_edit),
    Route("GET", "/language-models", "/language-models"),
    Route("GET", "/language-models/{model}", "/language-models/{model}"),
    Route("GET", "/image-generation-models", "/image-generation-models"),
    Route("GET", "/image-generation-models/{model}", "/image-generation-models/{model}"),
    Route("GET", "/embedding-models", "/embedding-models"),
    Route("GET", "/embedding-models/{model}", "/embedding-models/{model}"),
)


def by_path(routes=ROUTES) -> dict:
    """{tornado pattern: {method: Route}}: the rows of one path share one URL spec."""
    table: dict = {}
    for route in routes:
        rows = table.setdefault(route.pattern(), {})
        if route.method in rows:
            raise ValueError("two rows for %s %s" % (route.method, route.path))
        rows[route.method] = route
    return table
