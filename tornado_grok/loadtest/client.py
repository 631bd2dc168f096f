"""A lean asyncio HTTP/1.1 + SSE client: one chat request in, one Result out.

No requests, threads or SDK: one asyncio Protocol per connection (http1.py: a tiny HTTP/1.1
response parser) and an incremental SSE parser (parse.py). Per-event work is a few substring
checks; ujson parses only the events that may carry content, usage or an error. Connections are
kept alive and reused where the server allows it. This module holds the Target (the endpoint and
the request bytes every load request sends it) and the Client that runs requests against it.
"""
import asyncio
import socket
import ssl as _ssl
from urllib.parse import urlsplit

import ujson

from .http1 import Conn
from .parse import ResponsesSSEParser, SSEParser, TextSSEParser
from .result import Result, perf

APIS = ("chat", "responses", "grpc")  # --api: chat completions, the Responses API, xAI's gRPC chat stream


class Target:
    """One endpoint, the request head every load request sends to it, and its default body.

    `headers` are extra (name, value) pairs; `extra_body` is merged into every body's top level;
    `expect_chunks` makes a done answer with another number of content chunks a `content_mismatch`.
    """

    def __init__(self, url, key=None, model="bench", prompt="chunks=20 delay=10 size=8",
                 stream=True, timeout=60.0, connect_timeout=10.0, api="chat", headers=(),
                 extra_body=None, expect_chunks=None, keep_text=False):
        if api not in APIS or api == "grpc":
            raise ValueError(f"unknown API {api!r} (one of {', '.join(APIS[:2])}; grpc: GrpcTarget)")
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.address = _resolve(self.host, self.port)
        self.ssl = _ssl.create_default_context() if u.scheme == "https" else None
        path = u.path.rstrip("/")
        endpoint = "/responses" if api == "responses" else "/chat/completions"
        if not path.endswith(endpoint):
            path += endpoint
        if u.query:
            path += "?" + u.query
        self.path = path
        self.stream = stream
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.api = api
        self.model = model
        self.extra_body = extra_body or {}
        self.expect_chunks = expect_chunks
        self.keep_text = keep_text
        self.sse_parser = ResponsesSSEParser if api == "responses" else (
            TextSSEParser if keep_text else SSEParser)
        hostport = self.host if ":" not in self.host else f"[{self.host}]"
        if u.port:
            hostport += f":{u.port}"
        head = [f"POST {path} HTTP/1.1", f"Host: {hostport}",
                "User-Agent: tornado_grok-loadtest", "Content-Type: application/json",
                "Accept: " + ("text/event-stream" if stream else "application/json")]
        if key:
            if any(c in key for c in "\r\n\0"):
                raise ValueError("the key contains a line break")
            head.append(f"Authorization: Bearer {key}")
        for k, v in headers:
            if any(c in k + v for c in "\r\n\0"):
                raise ValueError(f"the header {k!r} contains a line break")
            head.append(f"{k}: {v}")
        self.head = ("\r\n".join(head) + "\r\n").encode()
        self.request_bytes = self.build([{"role": "user", "content": prompt}])

    def build(self, messages, max_tokens=None):
        """The request's bytes for these messages (and max_tokens, when drawn)."""
        if self.api == "responses":
            body = {"model": self.model, "input": messages, "stream": self.stream}
            if max_tokens is not None:
                body["max_output_tokens"] = max_tokens
        else:
            body = {"model": self.model, "messages": messages, "stream": self.stream}
            if self.stream:
                body["stream_options"] = {"include_usage": True}
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
        if self.extra_body:
            body.update(self.extra_body)
        payload = ujson.dumps(body, ensure_ascii=False, escape_forward_slashes=False).encode()
        return self.head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload


def _resolve(host, port):
    """The host's first address, looked up once: every connect then skips the resolver thread."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    except (OSError, IndexError):
        return host  # let the connects report the error


class Client:
    """Runs requests against one Target, reusing keep-alive connections."""

    def __init__(self, target, rec, connect_limit=0):
        self.target = target
        self.rec = rec
        self.idle = []
        self.active = set()
        self.connections_opened = 0
        self.stopping = False
        # Thousands of connects completing in one loop iteration stall it for up to a second; a
        # limit on handshakes in progress keeps bursts short but makes new connections queue
        # (in the tester, counted in the request's time): off by default, like independent users.
        self.connect_slots = asyncio.Semaphore(connect_limit) if connect_limit > 0 else None

    async def _connect(self):
        loop = asyncio.get_running_loop()
        t = self.target
        async with asyncio.timeout(t.connect_timeout):  # cheaper than wait_for: no extra task
            _, conn = await loop.create_connection(
                lambda: Conn(self.rec), t.address, t.port, ssl=t.ssl,
                server_hostname=t.host if t.ssl else None)
        self.connections_opened += 1
        return conn

    async def request(self, conv=None, request_bytes=None):
        """One request, start to end; always returns a finished Result. `conv` (a workload
        Conversation) is noted in the result, `request_bytes` replace the target's default body."""
        rec = self.rec
        res = Result()
        if conv is not None:
            res.conv, res.turn = conv.id, conv.turn + 1
        if self.target.keep_text:
            res.text = []
        rec.started_one()
        try:
            await self._run(res, request_bytes)
        except asyncio.CancelledError:
            res.end = res.end or "cancelled"
            raise
        finally:
            if not res.t_end:
                res.t_end = perf()
            if res.end is None:
                res.end = "cancelled"
            rec.finished_one(res)
        return res

    async def _run(self, res, request_bytes):
        t = self.target
        loop = asyncio.get_running_loop()
        for attempt in (0, 1):
            reused = False
            conn = None
            while self.idle:
                c = self.idle.pop()
                if not c.closed and c.reusable and not c.transport.is_closing():
                    conn, reused = c, True
                    break
                c.transport.abort()
            if conn is None:
                slots = self.connect_slots
                if slots is not None:
                    try:  # waiting for a connect slot counts against the request's own timeout
                        async with asyncio.timeout(max(0.001, res.t0 + t.timeout - perf())):
                            await slots.acquire()
                    except asyncio.TimeoutError:
                        res.end, res.detail = "timeout", f"no connect slot within {t.timeout}s"
                        return
                try:
                    conn = await self._connect()
                except asyncio.TimeoutError:
                    res.end, res.detail = "connect_error", f"connect timed out after {t.connect_timeout}s"
                    return
                except OSError as e:
                    res.end, res.detail = "connect_error", f"{type(e).__name__}: {e}"
                    return
                finally:
                    if slots is not None:
                        slots.release()
            if self.stopping:
                conn.transport.close()
                res.end = "cancelled"
                return
            fut = loop.create_future()
            self.active.add(conn)
            remaining = max(0.001, res.t0 + t.timeout - perf())
            timer = loop.call_later(remaining, conn.abort, "timeout", f"no end after {t.timeout}s")
            try:
                conn.begin(t, res, fut, reused, request_bytes)
                retry = await fut
            except BaseException:
                conn.abort("cancelled")
                raise
            finally:
                timer.cancel()
                self.active.discard(conn)
            if retry and attempt == 0:  # a kept-alive connection the server had already closed
                res.t0 = perf()
                continue
            if retry:
                res.end, res.detail = "disconnected", "closed before any response byte"
            if conn.reusable:
                self.idle.append(conn)
            return

    def abort_all(self, end="cancelled"):
        self.stopping = True
        for conn in list(self.active):
            conn.abort(end)

    def close(self):
        for c in self.idle:
            if not c.closed:
                c.transport.close()
        self.idle.clear()
