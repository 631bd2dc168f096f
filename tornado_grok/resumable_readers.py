"""The readers of a stored stream: a StreamReader writes one client connection from an event id on,
then live, to the stream's end, and owns the client-side concerns: backpressure (a reader that its
client has not caught up with stops taking events, and catches up from the store when the client
drains; the upstream never waits for a reader) and keep-alives (KEEPALIVE). A SequenceReader reads a
Responses stream by sequence_number, through a SequenceFilter (GET /responses/{id}?stream=true).
"""

import asyncio
import re
import time

from tornado.iostream import StreamClosedError

from .sequence_index import event_sequence

# The keep-alive of a reader is `: keep-alive\n`, a comment line WITHOUT a blank line after it:
# once an `id:` was seen, openai-python dispatches an (empty, unparseable) event at every blank line,
# so the plain stream's `: keep-alive\n\n` would break it. A comment line ahead of the next event's
# lines is ignored by every SSE reader (the WHATWG parser, openai-python, openai-node, a
# `startswith("data: ")` loop).
KEEPALIVE = b": keep-alive\n"  # no blank line: see above


class StreamReader:
    """One client connection reading a StoredStream from an event id on, then live, to its end."""

    def __init__(self, handler, entry: "StoredStream", last_id: int, resumed: bool):
        self.handler = handler
        self.entry = entry
        self.pos = last_id  # the id of the last event this client has
        self.resumed = resumed  # a resume answers 200 at once; a first request with its first event
        self.high_water = entry.high_water
        self.waiting = False  # the client has not taken what it was sent: no more until it has
        self.closed = False
        self.headers_sent = False
        self.stream = None
        self.keepalives = 0
        self.last_write = time.monotonic()
        self.done = asyncio.get_running_loop().create_future()

    async def run(self) -> None:
        self.entry.attach(self)
        if self.resumed:
            self._send(b"")
        self.feed()
        await self.done

    def feed(self) -> None:
        """Sends what the client does not have yet, and ends the response after the last event."""
        if self.closed or self.waiting:
            return
        entry = self.entry
        if not self.headers_sent and entry.error is not None:
            self.headers_sent = True  # nothing was ever sent: the error's own status and body
            self.handler.set_status(entry.error.status)
            self.handler.write(self.handler.render_error(entry.error))
            self._finish()
            return
        if entry.count > self.pos:
            if entry.firsts[-1] == self.pos + 1:  # a reader that is up to date: the newest block
                data = entry.blocks[-1]
            else:
                events = entry.after(self.pos)
                data = b"".join(events) if len(events) > 1 else events[0]
            self.pos = entry.count
            self._send(data)
        if entry.ended and self.pos == entry.count and not self.closed:
            self._finish()

    def _send(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_write = time.monotonic()
        handler = self.handler
        if self.stream is None:
            if not self.headers_sent:
                self.headers_sent = True
                handler.set_sse_headers()
                stream = getattr(handler.request.connection, "stream", None)
                if stream is not None:
                    stream.set_nodelay(True)
            handler.write(data)
            flushed = handler.flush()
            connection = handler.request.connection
            if getattr(connection, "_chunking_output", False):
                self.stream = connection.stream
            stream = getattr(connection, "stream", None)
            if stream is None or stream.closed():
                return
        else:
            try:
                flushed = self.stream.write(b"%x\r\n%s\r\n" % (len(data), data))
            except StreamClosedError:
                return
            if self.stream.closed():
                return
        if handler.unsent_bytes() > self.high_water:
            self.waiting = True
            flushed.add_done_callback(self._on_drained)

    def _on_drained(self, future) -> None:
        self.waiting = False
        if not self.closed and not future.cancelled() and future.exception() is None:
            self.feed()
            if not self.entry.resumable:
                self.entry.trim()

    def check(self, now: float, interval: float) -> None:
        """Called by the store's sweep: a keep-alive when the client has heard nothing for a while."""
        if not self.closed and not self.waiting and now - self.last_write >= interval:
            self.keepalives += 1
            self._send(KEEPALIVE)

    def _finish(self) -> None:
        self.closed = True
        self.entry.detach(self)
        try:
            self.handler.finish()
        except StreamClosedError:
            pass
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        """The client left."""
        if not self.closed:
            self.closed = True
            self.entry.detach(self)
            if not self.entry.ended:
                # The access log line of this request: its client left, the stream went on.
                self.handler.log_fields["detached"] = True
        if not self.done.done():
            self.done.set_result(None)


_ID_LINE = re.compile(rb"^id: \d+\n", re.M)


class SequenceFilter:
    """Stored Responses events as GET /responses/{id}?stream=true&starting_after=N gives them: the
    events whose own `sequence_number` is over N, without the gateway's `id:` lines (the upstream's
    bytes exactly). Sequence numbers grow: once one event passes, every later one does, and only
    the `id:` lines are cut. The reader starts at the index's guess (StoredStream.seek), so this
    looks at the events of one block at most, by a byte scan (event_sequence), never a JSON parse."""

    def __init__(self, after: int):
        self.after = after
        self.passing = after < 0

    def __call__(self, data: bytes) -> bytes:
        if not data or data == KEEPALIVE:
            return data
        data = _ID_LINE.sub(b"", data)
        if self.passing:
            return data
        start, after = 0, self.after
        while True:  # one turn per event of data
            end = data.find(b"\n\n", start)
            if end < 0:
                return b""
            # An error event always passes: one made with no event before it is numbered 0.
            if event_sequence(data, start, end) > after:
                self.passing = True
                return data[start:] if start else data
            start = end + 2


class SequenceReader(StreamReader):
    """A StreamReader of a Responses stream by sequence_number (SequenceFilter), from its start."""

    def __init__(self, handler, entry: "StoredStream", after: int):
        super().__init__(handler, entry, entry.seek(after), resumed=True)
        self.filter = SequenceFilter(after)

    def _send(self, data: bytes) -> None:
        out = self.filter(data)
        if out or not data:  # all of it before the cursor: nothing to send (an empty chunk would end it)
            super()._send(out)
