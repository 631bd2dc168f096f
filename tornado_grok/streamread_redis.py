"""Readers on this process of a stream that another process relays (stream_store = "redis"):
RemoteStream (what Redis holds of it), RemoteReader (XRANGE what its client missed, then the live
entries this process's one XREAD loop hands it, streamtail_redis.RemoteTail) and SequenceRemoteReader
(a Responses stream by sequence_number).
"""

import asyncio
import logging
import time

from tornado.iostream import StreamClosedError
from redis.exceptions import RedisError

from .errors import GatewayError
from .health_redis import safe_url
from .resumable import KEEPALIVE, SequenceFilter, StoredStream, error_event
from .streampool_redis import WRITE_TIMEOUT, store_error
from .streamtail_redis import OWNER_GRACE
from .streamwrite_redis import WRITE_INTERVAL, index_key, keys

log = logging.getLogger("tornado_grok")


class RemoteStream:
    """A stream found in Redis (its owner is another process): what a resume needs to know."""

    def __init__(self, store, stream_id: str, meta: dict):
        self.store = store
        self.id = stream_id
        self.key_digest = meta.get(b"key", b"").decode()
        self.token_digest = meta.get(b"token", b"").decode()
        self.dialect = meta.get(b"dialect", b"chat").decode()
        self.state = meta.get(b"state", b"").decode()
        self.resumable = self.state != "overflow"
        self.ended = self.state == "ended"
        self.error = None
        self.count = float("inf")  # not known here while it runs (RemoteReader.wait_for)
        self.held = 0  # the events Redis held when it was found

    allows = StoredStream.allows

    def reader(self, handler, last_id: int):
        return RemoteReader(handler, self, last_id)

    def sequence_reader(self, handler, after: int):
        return SequenceRemoteReader(handler, self, after)


class RemoteReader:
    """A client reading a stream relayed by another process: XRANGE what it missed, then the live
    entries this process's one XREAD loop hands it (streamtail_redis.RemoteTail), to the end marker;
    an error event if the owner stops heartbeating or the stream stops being readable."""

    def __init__(self, handler, stream: RemoteStream, last_id: int):
        self.handler = handler
        self.stream = stream
        self.store = stream.store
        self.pos = last_id
        self.last_events = b""
        self.closed = False
        self.finished = False
        self.waiting = False  # waiting for its client to take what it was sent
        self.keepalives = 0
        self.last_write = time.monotonic()
        self.inbox: list = []  # entries the tail handed over, not yet sent
        self.failure = None  # an error the tail found (owner lost, not resumable, Redis down too long)
        self.wakeup = asyncio.Event()

    async def run(self) -> None:
        store = self.store
        m, e, o, _, r = keys(self.stream.id)
        if self.pos > self.stream.held:
            await self.wait_for(m, e)
        self.handler.set_sse_headers()
        store.remote_readers.add(self)
        follow = None
        try:
            await self._write(b"")
            if not self.stream.ended:
                follow = store.tail.join(self, self.stream.id, (m, e, o, r))
            cursor = await self._catch_up(e)
            if follow is not None and not self.finished and not self.closed:
                await store.tail.start(follow, cursor)
            while not self.closed and not self.finished:
                if self.inbox:
                    entries, self.inbox = self.inbox, []
                    await self._take(entries)
                elif self.failure is not None:
                    await self._fail(self.failure)
                elif follow is None:  # an ended stream whose end entry is not in Redis
                    await self._fail(GatewayError(502, "events of this stream were lost (the stream store "
                                                       "missed a write)", code="stream_events_lost"))
                else:
                    self.wakeup.clear()
                    await self.wakeup.wait()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("resuming stream %s from Redis (%s) failed: %s", self.stream.id,
                        safe_url(store.config.redis_url), exc)
            await self._fail(store_error(exc))
        finally:
            store.remote_readers.discard(self)
            if follow is not None:
                store.tail.leave(self, follow)
        if not self.closed:
            self.closed = True
            try:
                self.handler.finish()
            except StreamClosedError:
                pass

    async def wait_for(self, m: str, e: str) -> None:
        """A Last-Event-ID past the events Redis holds of a running stream: its owner may not have
        written them yet (it writes every WRITE_INTERVAL; after a Redis failure, within a heartbeat).
        Answered once Redis holds that event (then 200), or with 400 when the stream ended before it
        or Redis still does not hold it after OWNER_GRACE heartbeats and a write timeout."""
        c = self.store.config
        deadline = time.monotonic() + OWNER_GRACE * c.resume_heartbeat + WRITE_TIMEOUT
        pause = WRITE_INTERVAL
        while True:
            try:
                state, last = await self.store.redis.pipeline(transaction=False).hget(m, "state") \
                    .xrevrange(e, count=1).execute()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                raise store_error(exc)
            held = int(last[0][0].split(b"-")[0]) if last else 0
            if held >= self.pos:
                return
            if state != b"running" or time.monotonic() > deadline:
                raise GatewayError(400, "Last-Event-ID %d is after the stream's last event (%d)" % (self.pos, held),
                                   code="invalid_last_event_id")
            await asyncio.sleep(pause)  # polling the owner's writes, with the deadline above
            pause = min(2 * pause, c.resume_heartbeat / 2)

    async def _catch_up(self, e: str) -> bytes:
        """Sends what Redis has after the client's event; returns the id of the last entry read."""
        cursor = b"%d-0" % self.pos
        start = "%d-1" % self.pos
        while not self.closed and not self.finished:
            entries = await self.store.redis.xrange(e, min=start, count=1000)
            if not entries:
                break
            cursor = entries[-1][0]
            start = b"(" + cursor
            await self._take(entries)
            if len(entries) < 1000:
                break
        return cursor

    def deliver(self, entries: list) -> None:
        """New entries read by the tail (their bytes are shared by every reader, not copied)."""
        self.inbox.extend(entries)
        self.wakeup.set()

    def fail_later(self, err: GatewayError) -> None:
        if self.failure is None:
            self.failure = err
            self.wakeup.set()

    async def _take(self, entries) -> None:
        for entry_id, fields in entries:
            if self.finished or self.closed:
                return
            data = fields.get(b"e")
            if data:
                first = self.pos + 1
                if not data.startswith(b"id: %d\n" % first):
                    cut = data.find(b"id: %d\n" % first)
                    if cut < 0 or (cut > 0 and data[cut - 2:cut] != b"\n\n"):
                        if int(entry_id.split(b"-")[0]) <= self.pos:
                            continue  # all of it was sent already
                        await self._fail(GatewayError(502, "events of this stream were lost (the stream store "
                                                           "missed a write)", code="stream_events_lost"))
                        return
                    data = data[cut:]
                self.pos = int(entry_id.split(b"-")[0])
                self.last_events = data
                await self._write(data)
            if b"end" in fields:
                self.finished = True
                return

    async def _fail(self, err: GatewayError) -> None:
        event = error_event(self.stream.dialect, err, self.last_events)
        self.finished = True
        await self._write(b"id: %d\n%s" % (self.pos + 1, event))

    def check(self, now: float, interval: float) -> None:
        """Called by the store's sweep: a keep-alive when the client has heard nothing for a while
        (whatever Redis does meanwhile)."""
        if not self.closed and not self.waiting and now - self.last_write >= interval:
            self.keepalives += 1
            self._send(KEEPALIVE)

    def _send(self, data: bytes):
        self.last_write = time.monotonic()
        self.handler.write(data)
        return self.handler.flush()

    async def _write(self, data: bytes) -> None:
        if self.closed:
            return
        flushed = self._send(data)
        if self.handler.unsent_bytes() > self.store.config.high_water_mark:
            self.waiting = True
            try:
                await flushed  # backpressure: take no more entries until the client takes this
            except Exception:
                self.close()
            self.waiting = False

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()


class SequenceRemoteReader(RemoteReader):
    """A RemoteReader of a Responses stream by sequence_number (resumable.SequenceFilter)."""

    def __init__(self, handler, stream: RemoteStream, after: int):
        super().__init__(handler, stream, 0)
        self.filter = SequenceFilter(after)

    async def run(self) -> None:
        after = self.filter.after
        if after >= 0:  # the index: the last block that starts at or before `after`, nothing parsed
            try:
                found = await self.store.redis.zrevrangebyscore(index_key(self.stream.id), after, "-inf",
                                                                start=0, num=1)
            except (RedisError, OSError, asyncio.TimeoutError):
                found = []  # read from the start: RemoteReader.run says what Redis does next
            if found:
                self.pos = int(found[0])
        await super().run()

    async def _write(self, data: bytes) -> None:
        out = self.filter(data)
        if out or not data:
            await super()._write(out)
