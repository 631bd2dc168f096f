"""Client connections, below the app: the connection cap, header/body/keep-alive timeouts, header
limits answered with a status (431, 414, 408), and accepting that backs off at the fd limit.

Tornado's HTTPServer does the HTTP; this module changes only where it falls short for a gateway
facing the internet: it counts connections, not requests; one header timeout (floored at an hour)
served for idle keep-alive, half-sent headers and nothing for a stalled body; an oversized header
closed the connection with no answer; and an accept() failure at the fd limit escaped into the loop,
which spun writing tracebacks.
"""

import asyncio
import errno
import logging
import resource
import socket
import time

from tornado import gen
from tornado.concurrent import Future
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.httputil import HTTPMessageDelegate
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import IOStream, StreamClosedError, UnsatisfiableReadError
from tornado.util import TimeoutError as _Timeout

from . import validate
from .errors import GatewayError

log = logging.getLogger("tornado_grok")

# An answer given without reading the rest of what the client sends (a 431 with a megabyte of header
# still coming) is followed by a lingering close: stop writing, read and drop for a short while, then
# close. Closing at once with unread bytes makes the kernel send a reset, which can destroy the answer
# before the client reads it (nginx's lingering_close does the same, for the same reason).
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
_ACCEPT_PAUSE_FIRST, _ACCEPT_PAUSE_MAX = 0.02, 1.0
_ACCEPT_LOG_EVERY = 60.0
_REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


class ConnectionSlots:
    """The max_connections cap: a slot per open client connection, taken at accept, freed at close."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


class _Stream(IOStream):
    """The server's IOStream, with four changes: it frees its connection slot the moment it closes
    (so a client that closed and reconnected is not refused by its own dead connection); a request
    head over max_header_size is handed to the parser marked as such instead of closing the socket;
    TCP_NODELAY is on for good; and hold()/release() make several writes one send (the end of a
    stream: its last events, the terminating chunk, and the headers too if they had not gone yet)."""

    slots: ConnectionSlots | None = None
    has_slot = False
    head_overflow = False
    _held = None  # between hold() and release(): what was written since hold(), and its size
    _held_size = 0

    def _find_read_pos(self):
        try:
            return super()._find_read_pos()
        except UnsatisfiableReadError:
            if self._read_regex is None:  # only the request head is read up to a regex
                raise
            self.head_overflow = True
            return self._read_buffer_size

    def set_nodelay(self, value: bool) -> None:
        """TCP_NODELAY stays on for the connection's whole life (handle_stream sets it; nginx's
        tcp_nodelay does the same): each write of the gateway is a whole answer, the end of one or a
        stream's events, none of which may wait for the ACK of the one before. Tornado's own calls
        (on as a response ends, off again after it) would each be a syscall for nothing."""

    def hold(self) -> None:
        """Until release(): what is written waits here, and goes out with the rest in one send."""
        self._held = []
        self._held_size = 0

    def write(self, data):
        held = self._held
        if held is None:
            return super().write(data)
        self._check_closed()
        if data:
            held.append(data)
            self._held_size += len(data)
        # Resolved by tornado, as its own are, once the stream has written this far (or failed).
        future = Future()
        future.add_done_callback(lambda f: f.exception())
        self._write_futures.append((self._total_write_index + self._held_size, future))
        return future

    def release(self) -> None:
        """Writes what was written since hold(), as one write (one send when the socket takes it)."""
        held, self._held = self._held, None
        if held is not None and not self.closed():
            super().write(b"".join(held))  # (empty, it still resolves the futures of empty writes)

    def close(self, exc_info=False) -> None:
        if self.has_slot:
            self.has_slot = False
            self.slots.release()
        super().close(exc_info)


class HeadRefused(Exception):
    """A request head the gateway answers with a status and no handler: too large, too many lines."""

    def __init__(self, error: GatewayError):
        super().__init__(error.message)
        self.error = error


def raw_response(error: GatewayError) -> bytes:
    """The whole HTTP response for an error answered below the app (no handler, so no request id)."""
    body = error.json_body()
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (error.status, _REASONS[error.status].encode(), len(body))) + body


class _Connection(HTTP1Connection):
    """One request on a connection: counts header lines before parsing them, watches the body read."""

    server: "GatewayHTTPServer"

    def _parse_headers(self, data: bytes):
        server = self.server
        if self.stream.head_overflow:
            line_end = data.lstrip(b"\r\n").find(b"\n")
            if line_end < 0 or line_end > server.max_header_size:
                raise HeadRefused(GatewayError(414, "the request line is longer than the limit of %d bytes"
                                               % server.max_header_size, code="uri_too_long"))
            raise HeadRefused(GatewayError(431, "the request headers are larger than the limit of %d bytes"
                                           % server.max_header_size, code="headers_too_large"))
        # bytes.count is C: the cost is paid before tornado parses the lines one by one in Python.
        if data.count(b"\n") > server.max_header_count + 2:
            raise HeadRefused(GatewayError(431, "the request has more than %d header lines"
                                           % server.max_header_count, code="too_many_headers"))
        start_line, headers = super()._parse_headers(data)
        length = headers.get("Content-Length")
        if length is not None:
            # Screened here, for every path: tornado's own check comes after the app has routed
            # the request (app.py, handlers/screening.py read the length too).
            try:
                validate.content_length(length)
            except GatewayError as e:
                raise HeadRefused(e) from None
        return start_line, headers

    def _read_body(self, code, headers, delegate):
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) <= self.stream._read_buffer_size:
            # The body came whole with the head (most requests): there is no read to watch.
            return super()._read_body(code, headers, delegate)
        watch = self.server.body_watch
        body = super()._read_body(code, headers, _Progress(delegate, self, watch))
        return None if body is None else watch.reading(self, body)

    def close_after_response(self) -> None:
        """Closes the connection once the response is written (a connection refused by the cap)."""
        self._disconnect_on_finish = True

    def admitted(self) -> bool:
        """Whether this connection holds a max_connections slot; tries once more to take one."""
        stream = self.stream
        if not stream.has_slot and stream.slots is not None and stream.slots.take():
            stream.has_slot = True
        return stream.has_slot

    def body_stalled(self) -> None:
        """No body byte for body_timeout: 408 if nothing was answered yet, and the connection closes."""
        stream = self.stream
        if stream is None or stream.closed():
            return
        log.info("closing a connection whose request body stalled for %s s", self.server.body_timeout)
        if self._response_start_line is None and not self._write_finished:
            error = GatewayError(408, "no request body data for %s s" % self.server.body_timeout,
                                 code="body_timeout")
            stream.write(raw_response(error)).add_done_callback(lambda f: (f.exception(), stream.close()))
        else:
            stream.close()


class _Progress(HTTPMessageDelegate):
    """Passes body chunks on, stamping the time of each (the body timeout is a gap, not a total)."""

    def __init__(self, delegate, conn, watch):
        self.delegate, self.conn, self.watch = delegate, conn, watch

    def data_received(self, chunk):
        self.watch.reading_since[self.conn] = time.monotonic()
        return self.delegate.data_received(chunk)


class _BodyWatch:
    """Request bodies being read, with the time of their last byte; one timer sweeps them all."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.reading_since: dict = {}
        self._timer = PeriodicCallback(self.sweep, 1000 * max(0.02, min(1.0, timeout / 4)))
        self._timer.start()

    async def reading(self, conn, body) -> None:
        self.reading_since[conn] = time.monotonic()
        try:
            await body
        finally:
            self.reading_since.pop(conn, None)

    def sweep(self) -> None:
        late = time.monotonic() - self.timeout
        for conn, since in list(self.reading_since.items()):
            if since < late:
                self.reading_since.pop(conn, None)
                conn.body_stalled()

    def stop(self) -> None:
        self._timer.stop()


class _ServerConnection(HTTP1ServerConnection):
    """A client connection: its first request's head must arrive within header_timeout, each later
    one within keepalive_timeout of the previous answer; a refused head is answered, then closed."""

    def __init__(self, stream, server: "GatewayHTTPServer", context):
        super().__init__(stream, server.conn_params, context)
        self.server = server

    async def _server_request_loop(self, delegate) -> None:
        # tornado's loop, with the keep-alive timeout after the first request and HeadRefused answered.
        params = self.server.conn_params
        try:
            while True:
                conn = _Connection(self.stream, False, params, self.context)
                conn.server = self.server
                request_delegate = delegate.start_request(self, conn)
                try:
                    ret = await conn.read_response(request_delegate)
                except HeadRefused as e:
                    await answer_and_close(self.stream, e.error)
                    return
                except (StreamClosedError, UnsatisfiableReadError):
                    return
                except Exception:
                    log.error("Uncaught exception on a client connection", exc_info=True)
                    conn.close()
                    return
                if not ret:
                    return
                params = self.server.keepalive_params
                await asyncio.sleep(0)
        finally:
            delegate.on_close(self)


async def answer_and_close(stream: IOStream, error: GatewayError) -> None:
    """Writes a whole error response, then a lingering close (see LINGER_SECONDS)."""
    try:
        await stream.write(raw_response(error))
        stream.socket.shutdown(socket.SHUT_WR)
        deadline = IOLoop.current().time() + LINGER_SECONDS
        dropped = 0
        while dropped < LINGER_BYTES:
            dropped += len(await gen.with_timeout(deadline, stream.read_bytes(65536, partial=True),
                                                  quiet_exceptions=(StreamClosedError,)))
    except (StreamClosedError, _Timeout, OSError):
        pass
    finally:
        stream.close()


class GatewayHTTPServer(HTTPServer):
    """HTTPServer with the gateway's connection rules (module docstring); `slots` is the cap."""

    def initialize(self, request_callback, config=None, slots: ConnectionSlots | None = None,
                   **kwargs) -> None:
        if kwargs.get("ssl_options"):  # handle_stream turns plain IOStreams into _Stream, not SSLIOStreams
            raise ValueError("GatewayHTTPServer serves plain HTTP; terminate TLS in front of it")
        super().initialize(request_callback, max_header_size=config.max_header_size,
                           idle_connection_timeout=config.header_timeout, **kwargs)
        self.max_header_size = config.max_header_size
        self.max_header_count = config.max_header_count
        self.body_timeout = config.body_timeout
        self.keepalive_params = _copy_params(self.conn_params, header_timeout=config.keepalive_timeout)
        self.slots = slots if slots is not None else ConnectionSlots(config.max_connections)
        self.body_watch = _BodyWatch(config.body_timeout)

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        # TCPServer builds a plain IOStream; _Stream adds no state of its own beyond class defaults,
        # so the instance can take the subclass as it is.
        stream.__class__ = _Stream
        IOStream.set_nodelay(stream, True)  # for the connection's life (_Stream.set_nodelay)
        stream.slots = self.slots
        stream.has_slot = self.slots.take()
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        conn = _ServerConnection(stream, self, context)
        self._connections.add(conn)
        conn.start_serving(self)

    def add_sockets(self, sockets) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = _Acceptor(sock, self._handle_connection).remove

    async def close_all_connections(self) -> None:
        self.body_watch.stop()
        await super().close_all_connections()


def _copy_params(params, **changes):
    copy = type(params).__new__(type(params))
    copy.__dict__.update(params.__dict__, **changes)
    return copy


class _Acceptor:
    """tornado's add_accept_handler, except that an accept() error (EMFILE at the fd limit) pauses
    accepting for a growing delay (reset by a success) instead of escaping into the loop, which would
    call it again at once, forever. Logged at most once a minute, with a count; connections already
    open are served meanwhile."""

    def __init__(self, sock: socket.socket, callback):
        self.sock, self.callback = sock, callback
        self.io_loop = IOLoop.current()
        self.removed = False
        self.timer = None
        self.pause = _ACCEPT_PAUSE_FIRST
        self.logged_at = None
        self.failures = 0
        self.io_loop.add_handler(sock, self.on_ready, IOLoop.READ)

    def on_ready(self, fd, events) -> None:
        for _ in range(128):  # as tornado: a bounded batch per turn, so other work is not starved
            if self.removed or self.timer is not None:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                self.back_off(e)
                return
            self.pause = _ACCEPT_PAUSE_FIRST
            self.callback(connection, address)

    def back_off(self, e: OSError) -> None:
        now = time.monotonic()
        if self.logged_at is None or now - self.logged_at >= _ACCEPT_LOG_EVERY:
            # At the limit accepts fail and succeed by turns as connections close: one line a minute.
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            hint = " (open file limit %d)" % limit if e.errno in (errno.EMFILE, errno.ENFILE) else ""
            more = "; %d more failures since the last report" % self.failures if self.failures else ""
            log.error("accept failed: %s%s; not accepting for a while (backing off up to %.0f s), "
                      "open connections are still served%s", e, hint, _ACCEPT_PAUSE_MAX, more)
            self.logged_at, self.failures = now, 0
        else:
            self.failures += 1
        self.io_loop.remove_handler(self.sock)
        self.timer = self.io_loop.call_later(self.pause, self.resume)
        self.pause = min(self.pause * 2, _ACCEPT_PAUSE_MAX)

    def resume(self) -> None:
        self.timer = None
        if not self.removed:
            self.io_loop.add_handler(self.sock, self.on_ready, IOLoop.READ)

    def remove(self) -> None:
        self.removed = True
        if self.timer is not None:
            self.io_loop.remove_timeout(self.timer)
            self.timer = None
        else:
            self.io_loop.remove_handler(self.sock)
