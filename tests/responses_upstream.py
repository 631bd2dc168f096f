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

import asyncio
import itertools
import json

import tornado.web

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
        script = self.owner.scripts.pop(sid, None) if isinstance(sid, str) else None
        if script is None:
            self.set_status(404)
            self.finish({"code": "not_found", "error": "no such script"})
            return
        status, content_type, pieces = script
        self.request.connection.stream.set_nodelay(True)
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        for piece in pieces:
            if piece:
                self.write(piece)
                await self.flush()
            await asyncio.sleep(0.001)  # pacing only: nothing depends on how the reads merge
        self.finish()


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
