"""Relays one upstream SSE stream to one client, event by event, as each upstream read arrives.

One relay for every streaming API: what differs between chat completions and the Responses API
(framing, the event that ends the stream, where usage and errors live, the error event) is the
dialect object it is given (dialects.py).

`on_chunk` is the hot path; libcurl calls it for every read (upstream.py). A read made only of
ordinary events (`data: {...}` chunks, or Responses `.delta` events) is checked with a few byte
scans and relayed whole (the dialect's `plain`: sse.plain_events, sse.plain_deltas); anything else
(comments, CR line ends, an event cut between reads, a possible error, usage or terminal event)
goes through the incremental parser, and each of those events is parsed as JSON by the dialect to
check it: a malformed event becomes an error event instead of breaking the client's SDK. An
aliased model name is put back in the bytes; nothing is re-encoded. The reads of one socket_action
reach the client as one chunk, sent as soon as that socket_action returns.
"""

import logging
import time

import ujson
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

from . import errors, sse
from .errors import GatewayError
from .upstream import WRITE_ABORT, curl_errno
from .upstreams import classify

log = logging.getLogger("tornado_grok")

MAX_ERROR_BODY = 64 * 1024
# After the stream's end event, the upstream has this long to end its response by itself (so that its
# connection is reused); one that keeps the connection open past it is cut.
DONE_GRACE = 2.0


class Outcome:
    """How a request ended, as the access log and accounting name it."""

    COMPLETED = "completed"
    CLIENT_GONE = "client_gone"
    UPSTREAM_ERROR = "upstream_error"
    TIMEOUT = "timeout"
    DRAINED = "drained"


class StreamRelay:
    """The state of one streamed response (of the API `dialect` speaks) between upstream and client."""

    def __init__(self, handler, gateway, model_asked: str, model_sent: str, dialect):
        self.handler = handler
        self.gateway = gateway
        self.dialect = dialect
        self.plain = dialect.plain
        self.parser = sse.SSEParser(gateway.config.max_event_size, dialect.typed)
        self.high_water = gateway.config.high_water_mark
        if model_asked != model_sent:
            self.rewrite = rewrite_pairs(model_sent, model_asked)
        else:
            self.rewrite = None
        self.call = None
        self.model_sent = model_sent  # routes the request to an upstream that serves it
        self.attempts = None  # the upstreams tried (upstreams.Attempts)
        self.stalled = False  # this attempt's first event was overdue: cancelled to try another upstream
        self.grace = None  # the timer that cuts an upstream still sending after the end event
        now = time.monotonic()
        self.started = self.last_read = self.last_write = now
        self.first_event_at = None
        self.headers_sent = False
        self.stream = None  # the client's IOStream, once the response has started
        self.pending = []  # events gathered during one socket_action (see _write)
        # The events of the last read relayed, kept only when the dialect numbers its error event
        # after them (Responses' sequence_number): a chat stream holds no bytes it has sent.
        self.keep_last = dialect.numbered
        self.last_out = None
        self.saw_done = False  # the dialect's end event ([DONE], a terminal Responses event) was seen
        self.closed = False  # nothing more goes to the client
        self.status = 0
        self.error_body = bytearray()
        self.events = 0
        self.bytes_out = 0
        self.keepalives = 0
        self.usage_seen = None
        # What the fast path relayed, for a usage estimate when the stream ends without usage
        # (usage.py): a counter add per read, and the last two reads' events kept as samples.
        self.plain_bytes = 0
        self.plain_events = 0
        self.plain_sample = self.plain_before = None
        self.outcome = None
        self.error = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, body: bytes | None, extra_headers: dict, method: str = "POST",
                  path: str | None = None, query: dict | None = None) -> None:
        """Sends the request upstream (to the dialect's path unless `path` says otherwise, with
        `query`) and relays its stream until it ends."""
        c = self.gateway.config
        self.gateway.streams.add(self)  # while run() runs (unlink)
        attempts = None
        try:
            attempts = self.attempts = self.gateway.upstreams.attempts(
                self.model_sent or None, getattr(self.handler, "pinned", None), c.first_event_timeout)
            upstream = attempts.first()
            while upstream is not None:
                self.handler.served(upstream)
                self.call = self.gateway.upstream.call(
                    method, path or self.dialect.path, body, timeout=c.total_timeout + 5,
                    extra_headers=extra_headers, on_chunk=self.on_chunk, query=query, target=upstream.target)
                self.call.start()
                response = await self.call.response()
                upstream = self._next_upstream(response)
            if self.call.callback_error is not None:
                log.error("error relaying a stream", exc_info=self.call.callback_error)
                self.abort(GatewayError(500, "internal error while relaying the stream",
                                        code="internal_error"), Outcome.UPSTREAM_ERROR)
            elif self.stalled:
                self.abort(errors.timeout("first_event"), Outcome.TIMEOUT)
            elif not self.closed:
                self._upstream_finished(response)
        except GatewayError as err:  # no upstream could take it (upstreams.Pool.refusal)
            self.abort(err, Outcome.UPSTREAM_ERROR)
        finally:
            if attempts is not None:
                attempts.done(self.status == 200)
            self.gateway.streams.discard(self)
            if self.grace is not None:
                IOLoop.current().remove_timeout(self.grace)
            if self.handler._finished:  # else the handler unlinks it when it finishes
                unlink(self.handler)

    def _next_upstream(self, response):
        """After an attempt ended: the upstream of the next one, when it failed before the client got
        a byte in a way another upstream may answer differently (upstreams.py), else None."""
        if self.bytes_out or self.call.callback_error is not None or (self.closed and not self.stalled):
            return None
        status = self.status or (response.code if response.code != 599 else 0)
        kind = classify(status, curl_errno(response), self.call.cancelled and not self.stalled, self.stalled)
        if kind is None:
            return None
        upstream = self.attempts.failed(kind, status, self.call.headers() if status else None)
        if upstream is None:
            refusal = self.attempts.refusal()
            if refusal is not None:
                raise refusal
            return None
        self.handler.log_fields["failovers"] = self.attempts.failovers
        self.status = 0
        self.stalled = False
        self.error_body = bytearray()
        self.parser = sse.SSEParser(self.gateway.config.max_event_size, self.dialect.typed)
        return upstream

    def on_chunk(self, chunk: bytes):
        """One upstream read, called from inside libcurl (upstream.py): returns WRITE_ABORT to stop.

        The client's 200 goes out with the first event (or keep-alive), not when the upstream's
        headers arrive: until then a failure can still be answered with its own status.
        """
        if self.closed:
            # After [DONE] let the transfer end by itself, so its connection can be reused.
            return None if self.saw_done else WRITE_ABORT
        self.last_read = time.monotonic()
        self.status = status = self.call.status
        if status != 200:
            # The first MAX_ERROR_BODY bytes are quoted (_upstream_finished); a body that goes past
            # them is cut there, not read to its end. One that ends within them is read whole, so
            # that its connection can be reused.
            self.error_body += chunk
            if len(self.error_body) > MAX_ERROR_BODY:
                return WRITE_ABORT
            return
        if self.parser.pending():
            # Finish the event the last read cut in two through the parser, then go on as usual.
            cut = chunk.find(b"\n\n")
            if cut < 0 or b"\r" in chunk:
                return self._relay_parsed(chunk)
            result = self._relay_parsed(chunk[:cut + 2])
            chunk = chunk[cut + 2:]
            if self.closed or not chunk:
                return result
        fast = self.plain(chunk)
        if fast is not None:
            return self._relay_plain(*fast)
        cut = _usage_cut(chunk)
        if cut:
            # A read that ends with the usage event (which the parsed path must look at) is most
            # often a stream's last: the events before that one still go the fast way.
            fast = self.plain(chunk[:cut])
            if fast is not None:
                self._relay_plain(*fast)
                if self.closed:
                    return None
                chunk = chunk[cut:]
        return self._relay_parsed(chunk)

    def _relay_parsed(self, chunk: bytes):
        """The general path: the incremental parser, and the dialect's look at each event."""
        try:
            events = self.parser.feed(chunk)
        except sse.SSEError as e:
            self.abort(GatewayError(502, str(e), code="upstream_bad_stream"), Outcome.UPSTREAM_ERROR)
            return WRITE_ABORT
        if not events:
            return None
        out = []
        frame = self.dialect.frame
        for event in events:
            try:
                data = frame(self, event)
            except GatewayError as err:
                self._emit(out)
                self.abort(err, Outcome.UPSTREAM_ERROR)
                return WRITE_ABORT
            if data is not None:
                out.append(data)
            if self.saw_done:
                break
        self._emit(out)
        if self.saw_done:
            # The upstream finished: the client's response ends with this write.
            self.outcome = Outcome.UPSTREAM_ERROR if getattr(self.dialect, "failed", False) else Outcome.COMPLETED
            self._end()
        return None

    def _relay_plain(self, block: bytes, count: int, done: bool, rest: bytes):
        """The common case, without a Python loop over events (see sse.plain_events)."""
        if count:
            self.plain_bytes += len(block)
            self.plain_events += count
            self.plain_sample, self.plain_before = block, self.plain_sample
        if self.rewrite is not None:
            block = _rewrite(block, self.rewrite)
        if done:
            self.saw_done = True
            block += sse.DONE
            count += 1
        if count:
            self._emit([block], count)
        if done:
            self.outcome = Outcome.COMPLETED
            self._end()
        elif rest:
            self.parser.feed(rest)  # the start of an event; completes in a later read
        return None

    def _emit(self, out: list, count: int = 0) -> None:
        """Writes the events of one upstream read, and notes when."""
        if out:
            if self.first_event_at is None:
                self.first_event_at = self.last_read
            if self.keep_last:
                self.last_out = out
            self.events += count or len(out)
            self.last_write = self.last_read
            self._write(out)

    def _write(self, out: list) -> None:
        if self.closed:
            return
        data = b"".join(out)  # the events of one read, or a keep-alive: a lone bytes object is returned as is
        self.bytes_out += len(data)
        call = self.call
        if call is not None and call.in_callback:
            # Inside libcurl, which may hand over several reads in one socket_action: gather them,
            # and UpstreamClient sends them as one chunk when that socket_action returns (still in
            # this IOLoop turn). One send per turn instead of one per read; and a stream that ends
            # in that socket_action sends them with its end (_end).
            if not self.pending:
                self.gateway.upstream.defer(self)
            self.pending.append(data)
        else:
            self._send(data)

    def send_pending(self) -> None:
        """Sends what _write gathered during a socket_action (UpstreamClient calls this)."""
        if self.pending:
            data = b"".join(self.pending)
            self.pending = []
            self._send(data)

    def _send(self, data: bytes) -> None:
        if self.stream is None:
            # The first write goes through tornado: it sends the status line and headers (and
            # starts the chunked encoding) together with these events. (An HTTP/1.0 client gets
            # no chunked encoding, and every write through tornado.)
            if not self.headers_sent:
                self._send_headers()
            self.handler.write(data)
            flushed = self.handler.flush()
            connection = self.handler.request.connection
            if getattr(connection, "_chunking_output", False):
                self.stream = connection.stream
        else:
            # Later events go straight to the connection's IOStream as HTTP/1.1 chunks, without the
            # two futures and callbacks per write of RequestHandler.flush; the order is the
            # stream's, so tornado's own last chunk still comes after them.
            try:
                flushed = self.stream.write(b"%x\r\n%s\r\n" % (len(data), data))
            except StreamClosedError:
                return  # on_connection_close follows
        # A write that found the client gone (EPIPE, reset) closed its stream, and a closed stream
        # owes nothing (unsent_bytes is 0): no pause for it; on_connection_close follows.
        call = self.call
        if call is not None and not call.paused and self.handler.unsent_bytes() > self.high_water:
            # Backpressure: stop reading the upstream until this client has taken what it owes.
            call.pause()
            flushed.add_done_callback(self._on_drained)

    def _on_drained(self, future) -> None:
        # A failed flush means the client is gone: client_gone() cancels the transfer instead.
        if not self.closed and not future.cancelled() and future.exception() is None:
            self.resume_upstream()

    def resume_upstream(self) -> None:
        """Reads the upstream again after backpressure paused it. The idle timeout counts from now:
        a paused transfer is not read, so the last read before the pause says nothing of the
        upstream (a sweep between the resume and the next read would otherwise end the stream)."""
        self.last_read = time.monotonic()
        self.call.resume()

    def _send_headers(self) -> None:
        # (TCP_NODELAY is on: connections._Stream keeps it on for the connection's life.)
        self.headers_sent = True
        self.handler.set_sse_headers()

    def _upstream_finished(self, response) -> None:
        if not self.status and response.code != 599:
            self.status = response.code
        if self.status and self.status != 200:
            body = bytes(self.error_body[:MAX_ERROR_BODY])
            self.abort(errors.from_upstream(self.status, body, self.call.headers(),
                                           self.gateway.upstream.secrets), Outcome.UPSTREAM_ERROR)
        elif response.code == 599:
            errno = curl_errno(response)
            outcome = Outcome.TIMEOUT if errno == errors.CURLE_OPERATION_TIMEDOUT else Outcome.UPSTREAM_ERROR
            self.abort(errors.from_curl(errno), outcome)
        else:
            # The end event closes the relay as it is relayed (run() only calls this while open).
            self.abort(GatewayError(502, self.dialect.incomplete, code="upstream_incomplete"),
                       Outcome.UPSTREAM_ERROR)

    def abort(self, err: GatewayError, outcome: str = Outcome.DRAINED) -> None:
        """Ends the stream with an error event (or, before anything was sent, the error's status)."""
        if self.closed:
            return
        self.error = err
        self.outcome = outcome
        if self.call is not None:
            self.call.cancel()
        self._end(err)

    def _deliver_error(self, err: GatewayError) -> None:
        """Where abort's error goes: this client (ResumableRelay: the stored stream its readers follow)."""
        if not self.headers_sent:
            self.headers_sent = True
            self.handler.set_status(err.status)
            # The error's own status and body: JSON, or a chat stream request's seed event (render_error).
            self.handler.write(self.handler.render_error(err))
        else:
            self.handler.write(self.dialect.error_event(err, self))

    def _end(self, err: GatewayError | None = None) -> None:
        """Ends the response: the events still pending, `err`'s error event (or status and body,
        before anything was sent) when it ended with one, and the end of the response, in one send
        to the client's socket (connections._Stream.hold) rather than one for each."""
        stream = getattr(self.handler.request.connection, "stream", None)
        hold = getattr(stream, "hold", None)
        if hold is not None:
            hold()
        try:
            self.send_pending()
            if err is not None:
                self._deliver_error(err)
            self._settle()
            try:
                self.handler.finish()
            except StreamClosedError:
                pass
        finally:
            if hold is not None:
                stream.release()

    def _settle(self) -> None:
        """What every end does before the response's own end: closed, the upstream let go, the
        usage accounted."""
        self.closed = True
        self._release_upstream()
        self.handler.account(self.usage(), self.outcome)

    def _release_upstream(self) -> None:
        """The stream has ended: a paused transfer resumes (to finish or fail), and one that is still
        open after the end event gets DONE_GRACE seconds to end before it is cut."""
        call = self.call
        if call is not None:
            call.resume()
            if self.saw_done and self.grace is None:
                self.grace = IOLoop.current().call_later(DONE_GRACE, call.cancel)

    def client_gone(self) -> None:
        """The client closed its connection: stop the upstream transfer now."""
        if self.closed:
            return
        self.closed = True
        self.outcome = Outcome.CLIENT_GONE
        if self.call is not None:
            self.call.cancel()
        self.handler.account(self.usage(), self.outcome)

    # -- the sweep ------------------------------------------------------------------------------

    def check(self, now: float, c) -> None:
        """Called by Gateway.sweep: timeouts and keep-alives."""
        if self.closed:
            return
        if not self.bytes_out and self.status in (0, 200) and self.call is not None and not self.stalled \
                and self.attempts.stalled(now):
            self.stalled = True  # run() goes on with the next upstream
            self.call.cancel()
            return
        what = self.due(now, c)
        if what == "keepalive":
            self.keep_alive(now)
        elif what is not None:
            self.abort(errors.timeout(what), Outcome.TIMEOUT)

    def due(self, now: float, c) -> str | None:
        """What the sweep owes this stream at `now` (Config `c`): the timeout it has passed (its
        seconds are past, strictly), else "keepalive" once keepalive_interval has passed since the
        last write, else None. A stream paused by backpressure is not idle."""
        if self.first_event_at is None and now - self.started > c.first_event_timeout:
            return "first_event"
        if self.first_event_at is not None and now - self.last_read > c.idle_timeout \
                and not (self.call is not None and self.call.paused):
            return "idle"
        if now - self.started > c.total_timeout:
            return "total"
        if now - self.last_write >= c.keepalive_interval:
            return "keepalive"
        return None

    def keep_alive(self, now: float) -> None:
        """A comment the client's SDK ignores, so that idle proxies keep the connection open."""
        self.keepalives += 1
        self.last_write = now
        self._write([sse.KEEPALIVE])

    # -- results --------------------------------------------------------------------------------

    def usage(self) -> dict | None:
        return self.usage_seen if isinstance(self.usage_seen, dict) else None


def _usage_cut(chunk: bytes) -> int:
    """Where the events before the first one that names "usage" end in this read, or 0."""
    at = chunk.find(b'"usage"')
    end = chunk.rfind(b"\n\n", 0, at) if at > 0 else -1
    return end + 2 if end > 0 else 0


def unlink(handler) -> None:
    """Drops the handler's link to its relay once both are done (the relay's run() has returned, the
    handler has finished), whichever ends last. The two point at each other; unlinked, a request's
    objects are freed by reference counting as it ends instead of waiting, as a cycle, for the
    garbage collector (docs/performance.md: a full collection is the stall of a tail)."""
    relay = handler.__dict__.get("relay")
    if relay is not None and relay not in relay.gateway.streams:
        del handler.relay


def rewrite_pairs(model_sent: str, model_asked: str) -> tuple:
    """The byte replacements that show the client's model name: the "model" member only, so a
    content string that happens to equal the name stays as it is."""
    sent = ujson.dumps(model_sent, escape_forward_slashes=False).encode()
    asked = ujson.dumps(model_asked, ensure_ascii=False, escape_forward_slashes=False).encode()
    return ((b'"model":' + sent, b'"model":' + asked), (b'"model": ' + sent, b'"model": ' + asked))


def _rewrite(data: bytes, pairs: tuple) -> bytes:
    """Puts the model name the client asked for back into the upstream's bytes (compact JSON, or
    with a space after the colon)."""
    for old, new in pairs:
        if old in data:
            data = data.replace(old, new)
    return data
