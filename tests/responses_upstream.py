"""A Responses API upstream that answers with exactly the bytes a test gives it (tests/cut_upstream.py
does the same for chat completions).

    up = ScriptedResponses()
    sid = up.script([b"event: response.created\\ndata: {...}\\n\\n", ...])
    # POST {up.url}/responses with `"input": sid`, or GET {up.url}/responses/{sid}: that status,
    # content type and body, each piece written and flushed on its own.
    up.authorizations  # the Authorization header of each request, in order
    up.uris            # the request URI of each request, in order
    up.close()
"""

import itertools
import json

import tornado.web

from tests.cut_upstream import play
from tests.thread_server import ThreadServer


class _Handler(tornado.web.RequestHandler):
    def initialize(self, owner):
        self.owner = owner

    async def post(self, _prefix):
        await self.answer(json.loads(self.request.body).get("input"))

    async def get(self, _prefix, sid):
        await self.answer(sid)

    async def answer(self, sid):
        self.owner.authorizations.append(self.request.headers.get("Authorization"))
        self.owner.uris.append(self.request.uri)
        await play(self, self.owner.scripts.pop(sid, None) if isinstance(sid, str) else None)


class ScriptedResponses(ThreadServer):
    """The server in a daemon thread on 127.0.0.1:<free port>; `url` is its /v1 base URL."""

    def __init__(self):
        self.scripts: dict = {}
        self.authorizations: list = []
        self.uris: list = []
        self._ids = itertools.count()
        self.start(tornado.web.Application([
            (r"(.*)/responses", _Handler, {"owner": self}),
            (r"(.*)/responses/([^/]+)", _Handler, {"owner": self}),
        ]))
        self.url = "http://127.0.0.1:%d/v1" % self.port

    def script(self, pieces: list, status: int = 200, content_type: str = "text/event-stream",
               sid: str | None = None) -> str:
        """Registers one response; returns its id (the `input` of a POST, the id of a GET)."""
        sid = sid or "resp_script_%d" % next(self._ids)
        self.scripts[sid] = (status, content_type, list(pieces))
        return sid


def event(kind: str, obj: dict) -> bytes:
    """One Responses SSE event, compact JSON as xAI sends it."""
    return b"event: " + kind.encode() + b"\ndata: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
