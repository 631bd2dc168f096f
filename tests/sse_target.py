"""A tiny deterministic OpenAI-style SSE server with known timing, for the load tester's tests.

The last user message says what to do, as space-separated key=value words:

    chunks=N      content chunks (default 20)
    delay=D       ms between chunks (default 0); non-streaming answers wait N*D ms
    size=S        characters per chunk (default 8)
    reasoning=K   the first K of the N chunks carry delta.reasoning_content instead of content
    status=C      answer HTTP status C with an error JSON body instead
    error_at=K    after K chunks, send the in-band `data: {"error": ...}` event and end (no [DONE])
    drop_at=K     after K chunks, drop the connection mid-stream
    head_delay=D  ms before the response headers
    no_done=1     end the stream normally but without `data: [DONE]`
    incomplete=1  (Responses API) end with response.incomplete
    malformed=K   (chat) send the truncated event `data: {"content":"oops` in place of chunk K

A body's `max_tokens` caps the chunks (one token per chunk). Every request's body and headers are
kept in stats["bodies"] and stats["headers"] (in arrival order), for tests of what was sent, and
the client address of each TCP connection in stats["peers"].

POST .../responses answers the same words with the Responses API's typed events (ResponsesHandler).

A final chunk with finish_reason "stop" (and, when stream_options.include_usage, a separate usage
chunk with `choices: []`, completion_tokens = N) and `data: [DONE]` end a normal stream.

Use SSETarget() in-process (a background thread with its own IOLoop, on a free loopback port), or
run `python tests/sse_target.py` as a subprocess: it prints its port on the first stdout line.
"""
import asyncio
import json
import os
import re
import sys

import tornado.httpserver
import tornado.netutil
import tornado.web

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.thread_server import ThreadServer  # noqa: E402

_WORD = re.compile(r"(?:^|\s)([a-z_]+)\s*=\s*(-?\d+)")


def scenario(body):
    text = ""
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            text = m["content"]
            break
    sc = {"chunks": 20, "delay": 0, "size": 8, "reasoning": 0, "status": 200,
          "error_at": -1, "drop_at": -1, "head_delay": 0, "no_done": 0, "incomplete": 0, "malformed": -1}
    for k, v in _WORD.findall(text):
        if k in sc:
            sc[k] = int(v)
    if isinstance(body.get("max_tokens"), int):
        sc["chunks"] = min(sc["chunks"], body["max_tokens"])
    return sc


def _chunk(model, delta, finish=None):
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class ChatHandler(tornado.web.RequestHandler):
    """POST .../chat/completions."""

    def initialize(self, stats):
        self.stats = stats

    async def post(self, _prefix):
        self.stats["requests"] += 1
        self.stats["connections"].add(id(self.request.connection))
        body = json.loads(self.request.body)
        self.stats.setdefault("bodies", []).append(body)
        self.stats.setdefault("peers", set()).add(self.request.connection.stream.socket.getpeername())
        self.stats.setdefault("headers", []).append(dict(self.request.headers))
        sc = scenario(body)
        model = body.get("model", "test")
        if sc["head_delay"]:
            await asyncio.sleep(sc["head_delay"] / 1000)
        if sc["status"] != 200:
            self.set_status(sc["status"])
            self.finish({"error": {"message": f"API error: status {sc['status']} as asked",
                                   "type": "test", "code": None}})
            return
        text = "x" * sc["size"]
        if not body.get("stream"):
            await asyncio.sleep(sc["delay"] * sc["chunks"] / 1000)
            self.finish({"id": "chatcmpl-test", "object": "chat.completion", "model": model,
                         "choices": [{"index": 0, "message": {"role": "assistant",
                                                              "content": text * sc["chunks"]},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": sc["chunks"],
                                   "total_tokens": 3 + sc["chunks"]}})
            return
        await self._stream(body, sc, model, text)

    async def _stream(self, body, sc, model, text):
        self.request.connection.stream.set_nodelay(True)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.write(": hello\n\n")  # a comment first: must not count as a token
        await self.flush()
        for k in range(sc["chunks"]):
            if k and sc["delay"]:
                await asyncio.sleep(sc["delay"] / 1000)
            if k == sc["error_at"]:
                return self._end('data: {"error":"API error: in-band error as asked"}\n\n')
            if k == sc["drop_at"]:
                self.request.connection.stream.close()
                return
            if k == sc["malformed"]:
                self.write('data: {"content":"oops\n\n')
                await self.flush()
                continue
            field = "reasoning_content" if k < sc["reasoning"] else "content"
            delta = {field: text}
            if k == 0:
                delta["role"] = "assistant"
            self.write("data: " + json.dumps(_chunk(model, delta)) + "\n\n")
            await self.flush()
        if sc["error_at"] == sc["chunks"]:
            return self._end('data: {"error":"API error: in-band error as asked"}\n\n')
        if sc["drop_at"] == sc["chunks"]:
            self.request.connection.stream.close()
            return
        tail = "data: " + json.dumps(_chunk(model, {}, "stop")) + "\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 3, "completion_tokens": sc["chunks"],
                     "total_tokens": 3 + sc["chunks"]}
            tail += "data: " + json.dumps({"id": "chatcmpl-test", "object": "chat.completion.chunk",
                                           "model": model, "choices": [], "usage": usage}) + "\n\n"
        self._end(tail + ("" if sc["no_done"] else "data: [DONE]\n\n"))

    def _end(self, text):
        self.write(text)
        self.finish()

    def on_connection_close(self):
        self.stats["closed_by_client"] += 1


def responses_scenario(body):
    """scenario() for a Responses body: the words are in the last user item of `input`."""
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    return scenario({"messages": [i for i in items or [] if isinstance(i, dict)]})


def _typed(kind, seq, **fields):
    return "event: %s\ndata: %s\n\n" % (kind, json.dumps(dict(type=kind, sequence_number=seq, **fields)))


class ResponsesHandler(ChatHandler):
    """POST .../responses: the Responses API's typed events, with the same words as chat, plus
    incomplete=1 (end with response.incomplete) and error_at=K (response.failed after K deltas);
    no_done=1 ends without a terminal event."""

    async def post(self, _prefix):
        self.stats["requests"] += 1
        self.stats["connections"].add(id(self.request.connection))
        body = json.loads(self.request.body)
        sc = responses_scenario(body)
        model = body.get("model", "test")
        if sc["status"] != 200:
            self.set_status(sc["status"])
            self.finish({"error": {"message": f"API error: status {sc['status']} as asked", "type": "test",
                                   "code": None}})
            return
        text = "x" * sc["size"]
        usage = {"input_tokens": 3, "output_tokens": sc["chunks"], "total_tokens": 3 + sc["chunks"]}
        response = {"id": "resp_test", "object": "response", "created_at": 1700000000, "model": model,
                    "status": "in_progress", "output": [], "usage": None}
        if not body.get("stream"):
            await asyncio.sleep(sc["delay"] * sc["chunks"] / 1000)
            message = {"type": "message", "id": "msg_test", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": text * sc["chunks"], "annotations": []}]}
            self.finish(dict(response, status="completed", output=[message], usage=usage))
            return
        self.request.connection.stream.set_nodelay(True)
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.write(_typed("response.created", 0, response=response)
                   + _typed("response.in_progress", 1, response=response)
                   + _typed("response.output_item.added", 2, output_index=0,
                            item={"type": "message", "id": "msg_test", "role": "assistant", "content": []}))
        await self.flush()
        seq = 3
        for k in range(sc["chunks"]):
            if k and sc["delay"]:
                await asyncio.sleep(sc["delay"] / 1000)
            if k == sc["error_at"]:
                failed = dict(response, status="failed", error={"code": "server_error", "message": "failed as asked"})
                return self._end(_typed("response.failed", seq, response=failed))
            if k == sc["drop_at"]:
                self.request.connection.stream.close()
                return
            kind = "response.reasoning_text.delta" if k < sc["reasoning"] else "response.output_text.delta"
            self.write(_typed(kind, seq, item_id="msg_test", output_index=0, content_index=0, delta=text))
            seq += 1
            await self.flush()
        if sc["no_done"]:
            return self._end(_typed("response.output_text.done", seq, item_id="msg_test", output_index=0,
                                    content_index=0, text=text * sc["chunks"]))
        status = "incomplete" if sc.get("incomplete") else "completed"
        self._end(_typed("response." + status, seq, response=dict(response, status=status, usage=usage)))


def make_app(stats):
    return tornado.web.Application([(r"(.*)/chat/completions", ChatHandler, {"stats": stats}),
                                    (r"(.*)/responses", ResponsesHandler, {"stats": stats})])


class SSETarget(ThreadServer):
    """The server in a daemon thread on 127.0.0.1:<free port>; `url` is its base URL."""

    def __init__(self):
        self.stats = {"requests": 0, "connections": set(), "closed_by_client": 0}
        self.start(make_app(self.stats), backlog=4096)
        self.url = f"http://127.0.0.1:{self.port}/v1"


def main():
    """Subprocess mode: serve on a free port (or argv[1]) and print it."""
    async def serve():
        stats = {"requests": 0, "connections": set(), "closed_by_client": 0}
        port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
        sockets = tornado.netutil.bind_sockets(port, "127.0.0.1", backlog=4096)
        server = tornado.httpserver.HTTPServer(make_app(stats), idle_connection_timeout=3600)
        server.add_sockets(sockets)
        print(sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
