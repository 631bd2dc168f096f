"""Resumable streams (opt-in, `X-Resumable: true`): a stream that outlives its client's connection.

A plain stream's relay writes straight to its client (relay.py: the client connection is its sink).
A resumable stream's relay (ResumableRelay) writes to a StoredStream instead: the events, each
framed with its `id: N`, kept in order; any number of StreamReaders follow it, each writing to one
client connection from an event id on, then live. The request that started the stream is just its
first reader. Readers own the client-side concerns: backpressure (a reader that its client has not
caught up with stops taking events, and catches up from the store when the client drains; the
upstream never waits for a reader) and keep-alives.

The keep-alive of a reader is `: keep-alive\\n`, a comment line WITHOUT a blank line after it:
once an `id:` was seen, openai-python dispatches an (empty, unparseable) event at every blank line,
so the plain stream's `: keep-alive\\n\\n` would break it. A comment line ahead of the next event's
lines is ignored by every SSE reader (the WHATWG parser, openai-python, openai-node, a
`startswith("data: ")` loop).

A StoredStream is capped (resume_max_bytes, resume_max_events): over the cap it stops being
resumable (logged); from then on it keeps only what its attached readers still have to take, and
ends like a plain stream when the last of them leaves.
"""

import asyncio
import bisect
import hashlib
import hmac
import logging
import re
import secrets
import time

import ujson

from tornado.iostream import StreamClosedError

from .errors import GatewayError
from .readers import ReaderSlots
from .relay import Outcome, StreamRelay
from .streambudget import StreamBudget

log = logging.getLogger("tornado_grok")

KEEPALIVE = b": keep-alive\n"  # no blank line: see the module docstring


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_handle() -> tuple:
    """A new stream id and its capability token (unguessable: 128 and 192 random bits)."""
    return secrets.token_urlsafe(16), secrets.token_urlsafe(24)


FRAME = b"id: %d\n%s\n\n"


def frame(data: bytes, first: int) -> tuple:
    """The events of `data` (whole events, each ending with a blank line) with `id:` lines numbered
    from `first`: (the framed bytes, how many events). No Python loop per event: one split, two
    slice assignments and one bytes formatting, all in C."""
    if data.count(b"\n\n") == 1:  # one event: the common case of a paced stream
        return b"id: %d\n%s" % (first, data), 1
    pieces = data.split(b"\n\n")
    pieces.pop()  # the empty piece after the last blank line
    n = len(pieces)
    args = [None] * (2 * n)
    args[0::2] = range(first, first + n)
    args[1::2] = pieces
    return (FRAME * n) % tuple(args), n


class StoredStream:
    """One resumable stream: its events (each with its `id:`), its state, its readers, its relay."""

    def __init__(self, stream_id: str, key_digest: str, token: str, config):
        self.id = stream_id
        self.key_digest = key_digest
        self.token_digest = token_digest(token)
        self.max_bytes = config.resume_max_bytes
        self.max_events = config.resume_max_events
        self.high_water = config.high_water_mark
        # The framed events, one block per append: blocks[i] starts with the event of id firsts[i].
        self.blocks: list = []
        self.firsts: list = []
        self.count = 0  # ids given so far: the last event's id
        self.nbytes = 0
        self.readers: set = set()
        self.relay = None  # the ResumableRelay, while the upstream runs (in this process)
        self.ended = False
        self.error = None  # the error that ended it before any event: answered with its status
        self.dialect = "chat"  # which API's events it holds (for an error event made elsewhere)
        self.resumable = True
        self.response_id = None  # a Responses stream's response id (from its response.created event)
        self.left_at = time.monotonic()  # when the last reader left
        self.ended_at = 0.0
        self.share = None  # its key's Share of the store's StreamBudget (set by the store's create)
        self.seqs = None  # a Responses stream: the sequence_number of each block's first event

    def allows(self, key_digest: str | None, token: str | None) -> bool:
        """Whether a client holding this key (digest) or this token may read or cancel the stream."""
        if token:
            return hmac.compare_digest(token_digest(token), self.token_digest)
        return key_digest is not None and hmac.compare_digest(key_digest, self.key_digest)

    # -- the writer's side (ResumableRelay) -------------------------------------------------------

    def append(self, data: bytes) -> bytes:
        """Stores the events of `data` (whole events, each ending with a blank line); returns
        them framed."""
        first = self.count + 1
        framed, n = frame(data, first)
        self.blocks.append(framed)
        self.firsts.append(first)
        self.count += n
        self.nbytes += len(framed)
        if self.seqs is not None:
            self.seqs.append(first_sequence(data, self.seqs))
        if self.resumable and (self.nbytes > self.max_bytes or self.count > self.max_events):
            self.resumable = False  # logged with the id's first 4 characters, as the log masks key-like tokens
            log.warning("stream %s is no longer resumable: over resume_max_bytes (%d) or resume_max_events "
                        "(%d) after %d events, %d bytes", self.id[:4] + "…", self.max_bytes, self.max_events,
                        self.count, self.nbytes)
        if self.share is not None and self.share.charge(len(framed)) and self.resumable:
            self.resumable = False
            log.warning("stream %s is no longer resumable: its key is over resume_key_bytes (%d) or all "
                        "keys over resume_total_bytes (%d) after %d events", self.id[:4] + "…",
                        self.share.budget.key_bytes, self.share.budget.total_bytes, self.count)
        return framed

    def publish(self) -> None:
        """Hands the new events to the readers (each takes what its client can take now)."""
        for reader in tuple(self.readers):
            reader.feed()
        if not self.resumable:
            self.trim()
            if not self.readers and self.relay is not None:
                # Over its cap or budget with nobody reading: nobody can come back for it (as detach).
                asyncio.get_running_loop().call_soon(self._unread)

    def _unread(self) -> None:
        if not self.readers and self.relay is not None:
            self.relay.cancel(not_resumable("the stream stopped being resumable (its cap or its key's budget) "
                                            "and nobody was reading it"))

    def finish(self) -> None:
        self.ended = True
        self.ended_at = time.monotonic()
        self.relay = None
        self.publish()

    def trim(self) -> None:
        """A stream that is no longer resumable keeps only what its readers have not taken; while
        that is over the high-water mark, the upstream waits (as a plain stream's does)."""
        keep = min(r.pos for r in self.readers) if self.readers else self.count
        i = bisect.bisect_right(self.firsts, keep + 1) - 1  # the block holding the event after keep
        if i > 0 or (i == 0 and keep == self.count):
            end = len(self.blocks) if keep == self.count else i
            dropped = sum(map(len, self.blocks[:end]))
            self.nbytes -= dropped
            if self.share is not None:
                self.share.release(dropped)
            del self.blocks[:end]
            del self.firsts[:end]
            if self.seqs is not None:
                del self.seqs[:end]
        relay = self.relay
        call = relay.call if relay is not None else None
        if call is not None and not relay.closed:
            if self.nbytes > self.high_water and not call.paused:
                call.pause()
            elif self.nbytes <= self.high_water and call.paused:
                relay.resume_upstream()

    # -- the readers' side ------------------------------------------------------------------------

    def attach(self, reader) -> None:
        self.readers.add(reader)

    def detach(self, reader) -> None:
        self.readers.discard(reader)
        if not self.readers:
            self.left_at = time.monotonic()
            if not self.resumable and self.relay is not None:
                # Nobody can come back for it: it ends as a plain stream ends when its client leaves.
                self.relay.cancel(not_resumable("the stream was over its resume cap and its last reader left"))
            elif not self.resumable:
                self.trim()

    def after(self, last_id: int) -> list:
        """The framed events after event `last_id` (blocks; the first one cut where they start)."""
        if last_id >= self.count:
            return []
        i = bisect.bisect_right(self.firsts, last_id + 1) - 1
        block = self.blocks[i]
        if self.firsts[i] != last_id + 1:
            block = block[block.find(b"\n\nid: %d\n" % (last_id + 1)) + 2:]
        return [block] + self.blocks[i + 1:] if i + 1 < len(self.blocks) else [block]

    def reader(self, handler, last_id: int):
        """A reader for a resume (answered 200 at once) from the event after last_id."""
        return StreamReader(handler, self, last_id, resumed=True)

    def sequence_reader(self, handler, after: int):
        """A reader for GET /responses/{id}?stream=true&starting_after=N (see SequenceFilter)."""
        return SequenceReader(handler, self, after)

    def seek(self, after: int) -> int:
        """The id of an event whose sequence_number is at most `after` and from which on the filter
        has at most one block to look at (0: from the start): a bisect of the index, nothing parsed."""
        if after < 0 or not self.seqs:
            return 0
        i = bisect.bisect_right(self.seqs, after)
        return self.firsts[i - 1] if i > 0 else 0


def gone(why: str) -> GatewayError:
    return GatewayError(410, why, code="stream_cancelled")


def not_resumable(why: str) -> GatewayError:
    """A stream over its cap (resume_max_bytes, resume_max_events) or its key's budget."""
    return GatewayError(410, why, code="stream_not_resumable")


class ResumableRelay(StreamRelay):
    """A StreamRelay whose sink is a StoredStream, not a client: it runs until the upstream ends
    (or is cancelled), whoever is reading."""

    def __init__(self, handler, gateway, model_asked, model_sent, dialect, entry: StoredStream, release):
        super().__init__(handler, gateway, model_asked, model_sent, dialect)
        self.entry = entry
        self.release = release  # frees the request's concurrency slot, once the upstream has ended
        self.watch = dialect.typed  # a Responses stream: its first event names the response id
        entry.relay = self

    def _write(self, out: list) -> None:
        if not out or self.closed:
            return
        data = b"".join(out) if len(out) > 1 else out[0]
        self.bytes_out += len(data)
        self.entry.append(data)
        if self.watch:
            self.watch = False
            response_id = created_id(data)
            if response_id is not None:
                self.gateway.stream_store.remember(response_id, self.entry)
        if self.call is not None and self.call.in_callback:
            # As the plain relay: the readers get the reads of one socket_action at once.
            if not self.pending:
                self.gateway.upstream.defer(self)
                self.pending.append(data)
        else:
            self.entry.publish()

    def send_pending(self) -> None:
        if self.pending:
            self.pending = []
            self.entry.publish()

    def keep_alive(self, now: float) -> None:
        self.last_write = now  # the readers keep their own connections alive (StreamReader.check)

    def _deliver_error(self, err: GatewayError) -> None:
        if self.entry.count == 0:
            self.entry.error = err  # before any event: a reader answers with the error's status
        # Kept as an event too: a reader that was already answered 200 (a resume, a keep-alive) gets it.
        self.entry.append(self.dialect.error_event(err, self))

    def _end(self) -> None:
        self.pending = []
        self.closed = True
        self._release_upstream()
        self.handler.account(self.usage(), self.outcome)
        self.entry.finish()
        release, self.release = self.release, None
        if release is not None:
            release()

    def client_gone(self) -> None:
        """A reader's client left: the stream goes on (StoredStream.detach decides)."""

    def cancel(self, err: GatewayError) -> None:
        """DELETE, or nobody came back within resume_window: stop the upstream, end the stream."""
        self.abort(err, Outcome.CLIENT_GONE)


class StreamReader:
    """One client connection reading a StoredStream from an event id on, then live, to its end."""

    def __init__(self, handler, entry: StoredStream, last_id: int, resumed: bool):
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
_SEQUENCE = re.compile(rb'"sequence_number":\s*(\d{1,18})')
_ERROR_EVENT = b"event: error\n"
ALWAYS = 1 << 62  # an event the sequence filter always passes (an error event, one with no number)


def event_sequence(data: bytes, start: int, end: int) -> int:
    """The sequence_number of the event data[start:end] by a byte scan (no JSON parse: the key's
    quotes are escaped inside any string, so only a member matches); ALWAYS for an error event or
    an event without one."""
    if data.startswith(_ERROR_EVENT, start):
        return ALWAYS
    found = _SEQUENCE.search(data, start, end)
    return int(found.group(1)) if found is not None else ALWAYS


def first_sequence(data: bytes, seqs: list) -> int:
    """The index entry of a stored block: its first event's sequence_number, kept non-decreasing."""
    number = event_sequence(data, 0, data.find(b"\n\n"))
    return number if not seqs or number >= seqs[-1] else seqs[-1]
_RESPONSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def event_json(event: bytes):
    """The JSON object of one SSE event (its `data:` lines joined), or None."""
    lines = [line[5:].lstrip(b" ") if line.startswith(b"data:") else None for line in event.split(b"\n")]
    try:
        obj = ujson.loads(b"\n".join(line for line in lines if line is not None))
    except ValueError:
        return None
    return obj if type(obj) is dict else None


def created_id(data: bytes):
    """The response id of a Responses stream's first event, when it is `response.created`."""
    if not data.startswith(b"event: response.created\n"):
        return None
    obj = event_json(data[:data.find(b"\n\n")])
    response = obj.get("response") if obj is not None else None
    response_id = response.get("id") if type(response) is dict else None
    return response_id if type(response_id) is str and _RESPONSE_ID.match(response_id) else None


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

    def __init__(self, handler, entry: StoredStream, after: int):
        super().__init__(handler, entry, entry.seek(after), resumed=True)
        self.filter = SequenceFilter(after)

    def _send(self, data: bytes) -> None:
        out = self.filter(data)
        if out or not data:  # all of it before the cursor: nothing to send (an empty chunk would end it)
            super()._send(out)


class MemoryStreamStore:
    """The resumable streams of this process (stream_store = "memory")."""

    def __init__(self, config):
        self.config = config
        self.entries: dict = {}
        self.responses: dict = {}  # response id -> stream id, for GET /responses/{id}?stream=true
        self.tasks: set = set()
        self.reader_slots = ReaderSlots(config.resume_readers_per_stream, config.resume_readers_per_key)
        self.budget = StreamBudget(config.resume_key_bytes, config.resume_total_bytes)

    async def admit(self, key_digest: str) -> str | None:
        """None when a new stream of this key may be resumable; else the budget it is over (the
        setting's name): the stream is then relayed as a plain one."""
        return self.budget.refusal(key_digest)

    async def create(self, key_digest: str, dialect: str) -> tuple:
        """A new stream of this key, with events of `dialect` (dialect_name): (entry, token)."""
        stream_id, token = new_handle()
        entry = self.new_stream(stream_id, key_digest, token)
        entry.dialect = dialect
        entry.share = self.budget.open(key_digest)
        if dialect == "responses":
            entry.seqs = []
        self.entries[stream_id] = entry
        return entry, token

    def run(self, relay, coro) -> None:
        """Runs a resumable stream's relay on its own, so it outlives the request that started it."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(lambda done: self._ran(relay, done))

    def _ran(self, relay, task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Nobody awaits this task: say what broke, and end the stream so that no reader waits.
            log.error("error relaying a resumable stream", exc_info=task.exception())
            relay.abort(GatewayError(500, "internal error while relaying the stream", code="internal_error"),
                        Outcome.UPSTREAM_ERROR)

    def new_stream(self, stream_id: str, key_digest: str, token: str) -> StoredStream:
        return StoredStream(stream_id, key_digest, token, self.config)

    async def find(self, stream_id: str):
        return self.entries.get(stream_id)

    def remember(self, response_id: str, entry: StoredStream) -> None:
        """A Responses stream's response id (the newest stream of an id wins), kept while the stream is."""
        entry.response_id = response_id
        self.responses[response_id] = entry.id

    async def find_response(self, response_id: str):
        """The stream that relayed this response, if this store still has it; else None."""
        stream_id = self.responses.get(response_id)
        return self.entries.get(stream_id) if stream_id is not None else None

    async def cancel(self, entry: StoredStream) -> bool:
        """Stops a stream's upstream (DELETE); False when it had already ended."""
        if entry.relay is None:
            return False
        entry.relay.cancel(gone("the stream was cancelled (DELETE)"))
        return True

    def sweep(self, now: float) -> None:
        """Keep-alives for readers, resume_window for streams nobody reads, resume_retention."""
        c = self.config
        for entry in list(self.entries.values()):
            if entry.ended:
                if now - entry.ended_at > c.resume_retention and not entry.readers:
                    del self.entries[entry.id]
                    self.dropped(entry)
                    if entry.response_id is not None and self.responses.get(entry.response_id) == entry.id:
                        del self.responses[entry.response_id]
                continue
            for reader in list(entry.readers):
                reader.check(now, c.keepalive_interval)
            if not entry.readers and entry.relay is not None and now - entry.left_at > c.resume_window:
                log.info("stream %s: no reader came back within resume_window (%ss); cancelled",
                         entry.id, c.resume_window)
                entry.relay.cancel(gone("no reader came back within resume_window (%gs)" % c.resume_window))

    def dropped(self, entry: StoredStream) -> None:
        """A stream left the store: its bytes leave its key's budget."""
        if entry.share is not None:
            self.budget.close(entry.share, entry.nbytes)

    def state(self) -> dict:
        return {"streams": len(self.entries),
                "running": sum(1 for e in self.entries.values() if not e.ended),
                "bytes": sum(e.nbytes for e in self.entries.values()),
                "readers": self.reader_slots.state()["readers"],
                "budget": self.budget.state()}

    async def close(self) -> None:
        pass


def dialect_name(dialect) -> str:
    """How a stream's dialect is named in the store (to make its error event in another process)."""
    if dialect.typed:
        return "responses"
    return "chat_openai" if dialect.openai_errors else "chat"


def error_event(dialect: str, err: GatewayError, last_events: bytes) -> bytes:
    """The error event of a stream whose relay is elsewhere (its dialect's form; for the Responses
    API numbered after the last event the reader got)."""
    from .dialects import ResponsesDialect  # here: dialects imports relay, as this module does
    if dialect == "responses":
        class Last:
            last_out = [last_events] if last_events else None
        return ResponsesDialect().error_event(err, Last)
    return err.sse_event(dialect == "chat_openai")
