"""A tiny upstream that sends exactly the bytes a test gives it, cut where the test says.

    up = CutUpstream()                       # a thread with its own IOLoop, on a free loopback port
    sid = up.script([b"data: {", b'"a":1}\\n\\n', b"data: [DONE]\\n\\n"])
    # POST {up.url}/chat/completions with the last user message `sid` (or {up.url}/responses with
    # the input `sid`): a 200 text/event-stream
    # whose body is those pieces, each written and flushed on its own (one HTTP chunk each).
    up.close()

The pieces are paced a millisecond apart so that they usually reach the reader as separate reads;
nothing depends on it (a test of a relay must give the same answer however the reads merge).
"""

import asyncio
import contextlib
import itertools
import json
import os

import tornado.web

from tests import hardening_helpers as hh
from tests import servers
from tests.thread_server import ThreadServer
from tests.wire import post


class _ScriptHandler(tornado.web.RequestHandler):
    def initialize(self, scripts, peers):
        self.scripts = scripts
        self.peers = peers

    async def post(self, _prefix):
        self.peers.append(self.request.connection.stream.socket.getpeername())
        body = json.loads(self.request.body)
        sid = body["input"] if "input" in body else body["messages"][-1]["content"]  # Responses or chat
        await play(self, self.scripts.pop(sid, None))


class CutUpstream(ThreadServer):
    """The server in a daemon thread on 127.0.0.1:<free port>; `url` is its /v1 base URL."""

    def __init__(self):
        self.scripts: dict = {}
        self.peers: list = []  # the client address of each request, in order (connection reuse)
        self._ids = itertools.count()
        self.start(tornado.web.Application([(r"(.*)/(?:chat/completions|responses)", _ScriptHandler,
                                             {"scripts": self.scripts, "peers": self.peers})]))
        self.url = "http://127.0.0.1:%d/v1" % self.port

    def script(self, pieces: list, status: int = 200, content_type: str = "text/event-stream") -> str:
        """Registers the pieces of one response (a 200 event stream unless `status` and
        `content_type` say otherwise); returns the id to send as the last user message (a
        Responses request: as its `input`)."""
        sid = "script-%d" % next(self._ids)
        self.scripts[sid] = (status, content_type, list(pieces))
        return sid


@contextlib.contextmanager
def gateway_before(folder: str):
    """A CutUpstream and a gateway in front of it (no rate limit, debug endpoints on):
    (upstream, gateway, key)."""
    upstream = CutUpstream()
    try:
        g = servers.start_gateway(os.path.join(folder, "gw"), upstream.url,
                                  {"debug_endpoints": True, "requests_per_minute": 0, "concurrent_requests": 0})
    except Exception:
        upstream.close()
        raise
    try:
        key = servers.add_key(os.path.join(folder, "gw", "keys.json"), "cut")
        yield upstream, g, key
    finally:
        g.stop()
        upstream.close()


def ask(relay, pieces: list, usage: bool | None = None, **script):
    """A streamed chat request through `relay` (gateway_before's triple) whose upstream answer is
    `pieces` (`script`: the status and content type, as for CutUpstream.script); the response, read
    whole. `usage`: the request's stream_options.include_usage, when not None."""
    upstream, gateway, key = relay
    sid = upstream.script(pieces, **script)
    body = {"model": "relay-test", "stream": True, "messages": [{"role": "user", "content": sid}]}
    if usage is not None:
        body["stream_options"] = {"include_usage": usage}
    return post(gateway.base + "/chat/completions", body, hh.auth(key), timeout=30)


async def play(handler, script) -> None:
    """Answers with a script, (status, content type, pieces): each piece written and flushed on its
    own, a millisecond apart (pacing only, see the module docstring); 404 for no script."""
    if script is None:
        handler.set_status(404)
        handler.finish({"code": "not_found", "error": "no such script"})
        return
    status, content_type, pieces = script
    handler.request.connection.stream.set_nodelay(True)
    handler.set_status(status)
    handler.set_header("Content-Type", content_type)
    for piece in pieces:
        if piece:
            handler.write(piece)
            await handler.flush()
        await asyncio.sleep(0.001)  # pacing only: nothing depends on how the reads merge
    handler.finish()
