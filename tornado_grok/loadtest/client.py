"""A lean asyncio HTTP/1.1 + SSE client: one chat request in, one Result out.

No requests, threads or SDK: one asyncio Protocol per connection, a tiny HTTP/1.1 response parser
(status line, headers, chunked / Content-Length / read-to-close bodies) and an incremental SSE
parser. Per-event work is a few substring checks; ujson parses only the events that may carry
content, usage or an error. Connections are kept alive and reused where the server allows it.
"""
import asyncio
import socket
import ssl as _ssl
import time
from urllib.parse import urlsplit

import ujson

from .parse import BodyCollector, ResponsesSSEParser, SSEParser, TextSSEParser, classify_body

APIS = ("chat", "responses", "grpc")  # --api: chat completions, the Responses API, xAI's gRPC chat stream

perf = time.perf_counter

# How a request ended. Only "done" is a success.
ENDS = ("done", "error_event", "http_error", "disconnected", "timeout", "connect_error",
        "no_done", "protocol_error", "content_mismatch", "cancelled")

_MAX_HEAD = 64 * 1024


class Result:
    """What one request did, in perf_counter seconds (t_* are absolute)."""

    __slots__ = ("t0", "t_headers", "t_first", "t_prev", "t_end", "status", "chunks", "tokens",
                 "done", "error", "end", "detail", "content_type", "proto", "text", "conv", "turn")

    def __init__(self):
        self.t0 = perf()
        self.t_headers = self.t_first = self.t_prev = self.t_end = 0.0
        self.status = 0
        self.chunks = 0
        self.tokens = None
        self.done = False
        self.error = None
        self.end = None
        self.detail = None
        self.content_type = ""
        self.proto = None  # the first malformed event, if any: the request is a protocol_error
        self.text = None   # a list of content strings when the answer's text is kept (--turns)
        self.conv = self.turn = None


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


_HEAD, _CL, _CHUNKED, _EOF = range(4)
_C_SIZE, _C_DATA, _C_CRLF, _C_TRAILER = range(4)


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection running one request at a time."""

    def __init__(self, rec):
        self.rec = rec
        self.transport = None
        self.closed = False
        self.res = None
        self.fut = None
        self.reusable = False

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        res = self.res
        if res is None:
            return
        if self.state == _EOF and res.status:
            self._complete(perf())
        elif self.got_bytes == 0 and self.reused:
            self._resolve(retry=True)
        else:
            why = "before any response byte" if self.got_bytes == 0 else "mid-response"
            self._fail("disconnected", f"connection closed {why}" + (f" ({exc!r})" if exc else ""))

    def eof_received(self):
        return False

    def data_received(self, data):
        if self.res is None:  # bytes nobody asked for: do not reuse this connection
            self.reusable = False
            self.transport.abort()
            return
        now = perf()
        self.got_bytes += len(data)
        if self.state == _HEAD:
            self._head(data, now)
        else:
            self.data_received_body(data, now)

    # -- request lifecycle -------------------------------------------------------------
    def begin(self, target, res, fut, reused, request_bytes=None):
        self.res = res
        self.fut = fut
        self.target = target
        self.reused = reused
        self.reusable = False
        self.got_bytes = 0
        self.state = _HEAD
        self.buf = b""
        self.sink = None
        self.transport.write(request_bytes or target.request_bytes)

    def abort(self, end, detail=None):
        """Timeout or cancellation: record `end` and drop the connection."""
        if self.res is not None:
            self._fail(end, detail)

    def _resolve(self, retry=False):
        fut = self.fut
        self.res = None
        self.fut = None
        self.sink = None
        if fut is not None and not fut.done():
            fut.set_result(retry)

    def _fail(self, end, detail):
        res = self.res
        res.end = end
        res.detail = detail
        res.t_end = perf()
        self.reusable = False
        self._resolve()
        if not self.closed:
            self.transport.abort()

    def _head(self, data, now):
        buf = self.buf + data if self.buf else data
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            if len(buf) > _MAX_HEAD:
                return self._fail("protocol_error", "response head too large")
            self.buf = buf
            return
        self.buf = b""
        lines = buf[:i].decode("latin-1").split("\r\n")
        rest = buf[i + 4:]
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
            version = parts[0]
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
        except (IndexError, ValueError):
            return self._fail("protocol_error", f"bad status line {lines[0][:80]!r}")
        if 100 <= status < 200:  # interim response: the real one follows
            return self._head(rest, now) if rest else None
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        res = self.res
        res.status = status
        res.t_headers = now
        ctype = headers.get("content-type", "")
        res.content_type = ctype
        conn_hdr = headers.get("connection", "").lower()
        self.keep = version == "HTTP/1.1" and "close" not in conn_hdr or "keep-alive" in conn_hdr
        if status == 200 and self.target.stream and ctype.startswith("text/event-stream"):
            self.sink = self.target.sse_parser(res, self.rec)
        else:
            self.sink = BodyCollector()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = _CHUNKED
            self.cbuf = b""
            self.cstate = _C_SIZE
            self.crem = 0
        elif "content-length" in headers:
            try:
                self.remaining = int(headers["content-length"])
            except ValueError:
                return self._fail("protocol_error", "bad Content-Length")
            self.state = _CL
            if self.remaining == 0 or status in (204, 304):
                return self._complete(now)
        elif status in (204, 304):
            return self._complete(now)
        else:
            self.state = _EOF
            self.keep = False
        if rest:
            self.data_received_body(rest, now)

    def data_received_body(self, data, now):
        if self.state == _CHUNKED:
            self._chunked(data, now)
        elif self.state == _CL:
            n = self.remaining
            if len(data) >= n:
                self.sink.feed(data[:n], now)
                self._complete(now)
            else:
                self.remaining = n - len(data)
                self.sink.feed(data, now)
        else:
            self.sink.feed(data, now)

    def _chunked(self, data, now):
        buf = self.cbuf + data if self.cbuf else data
        pos = 0
        n = len(buf)
        sink = self.sink
        while pos < n:
            st = self.cstate
            if st == _C_DATA:
                take = min(self.crem, n - pos)
                sink.feed(buf[pos:pos + take], now)
                pos += take
                self.crem -= take
                if self.crem == 0:
                    self.cstate = _C_CRLF
            elif st == _C_CRLF:
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    return self._fail("protocol_error", "bad chunk terminator")
                pos += 2
                self.cstate = _C_SIZE
            else:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if n - pos > 1024:
                        return self._fail("protocol_error", "chunk size line too long")
                    break
                line = buf[pos:i]
                pos = i + 2
                if st == _C_TRAILER:
                    if not line:
                        return self._complete(now)
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return self._fail("protocol_error", f"bad chunk size {line[:40]!r}")
                if size == 0:
                    self.cstate = _C_TRAILER
                else:
                    self.crem = size
                    self.cstate = _C_DATA
            if self.res is None:  # the sink finished or failed the request
                return
        self.cbuf = buf[pos:]

    def _complete(self, now):
        res = self.res
        sink = self.sink
        sink.close(now)
        res.t_end = now
        if isinstance(sink, SSEParser):
            res.end = "error_event" if res.error is not None else ("done" if res.done else "no_done")
        else:
            classify_body(res, sink, self.target.stream, self.rec, now)
        if res.proto is not None and res.end in ("done", "no_done"):
            res.end, res.detail = "protocol_error", res.proto
        expect = self.target.expect_chunks
        if expect is not None and res.end == "done" and res.chunks != expect:
            res.end = "content_mismatch"
            res.detail = f"{res.chunks} content chunks, {expect} expected"
        self.reusable = self.keep and self.state != _EOF and not self.closed
        self._resolve()


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
