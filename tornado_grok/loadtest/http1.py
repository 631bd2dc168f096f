"""One keep-alive HTTP/1.1 client connection (an asyncio Protocol) running one request at a time.

A tiny HTTP/1.1 response parser: the status line and headers, then a chunked, Content-Length or
read-to-close body, fed as it arrives to the Target's SSE parser (a streamed 200) or to a
BodyCollector (anything else). It fills in the request's Result and says whether the connection can
be reused.
"""
import asyncio

from .parse import BodyCollector, SSEParser, classify_body
from .result import perf

_MAX_HEAD = 64 * 1024

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
