"""Resumable streams shared through Redis (stream_store = "redis"): resume on any gateway process.

The process that relays a stream (its owner) keeps it in memory as the memory store does (its own
readers never wait for Redis) and mirrors it to Redis, so a reader on another process can follow it:

  tg:rs:{id}:m  hash: the key's and the token's digests, the dialect, state (running, ended, overflow)
  tg:rs:{id}:e  a Redis Stream of batches of events: entry id "<last event id>-0", field e = the
                framed events (`id: N` ...); the last entry has field end = 1 (alone: "<id>-1").
                XADD with MAXLEN resume_max_events; XRANGE for what a reader missed, and one
                XREAD BLOCK per process for the live tails (streamtail_redis.RemoteTail).
  tg:rs:{id}:o  the owner's heartbeat, a value that changes every resume_heartbeat seconds (TTL of
                three): a reader elsewhere that sees it stand still (streamtail_redis.OWNER_GRACE)
                while the stream runs ends with an error event.
  tg:rs:{id}:c  set by DELETE on any process; the owner reads it with its heartbeat and cancels.
  tg:rs:{id}:r  refreshed by readers on other processes: the owner's resume_window counts them.
  tg:rs:resp:{response id}  a Responses stream's id, for GET /responses/{id}?stream=true (set when
                its response.created event passes).
  tg:rs:{id}:q  a Responses stream's index: sorted set of the first event id of each block (one
                upstream read), scored by that event's sequence_number, so that a reader anywhere
                seeks starting_after=N.
  tg:rs:budget  sorted set of the processes holding stored streams (score: when their count expires);
  tg:rs:budget:{process}  hash: the bytes of events this process wrote, in total (`*`) and per key
                digest (streambudget.py); expires with the last stream it could hold.

Every key expires: resume_retention after the stream ended (total_timeout + resume_retention while
it runs). All writes go through one writer task, one pipeline per IOLoop turn for all streams, in
order. A write is taken off a stream's unwritten list only once its pipeline succeeded; a failed one
is sent again a heartbeat later (every command is idempotent: an XADD's id is its last event's id,
and one that Redis already has is refused as "equal or smaller", which counts as written). When
Redis fails, the stream goes on for its readers here (logged once per outage), and a reader
elsewhere that finds a gap in the ids ends with an error event instead of skipping events.

No command holds a pooled connection for longer than WRITE_TIMEOUT (the live tails have a
connection of their own), so the pool (POOL_SIZE) is not used up by readers; a burst of commands
waits up to WRITE_TIMEOUT for a free connection, and if the pool is full all the same, the answer
says so (`stream_store_busy`), not that Redis is unreachable.
"""

import asyncio
import logging
import secrets
import time

import redis.asyncio as aioredis
from tornado.iostream import StreamClosedError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, MaxConnectionsError, RedisError

from .errors import GatewayError
from .ratelimit_redis import safe_url
from .resumable import KEEPALIVE, MemoryStreamStore, SequenceFilter, StoredStream, error_event, gone
from .streamtail_redis import OWNER_GRACE, RemoteTail, store_unavailable

BUDGET = "tg:rs:budget"
# KEYS: the processes' set, this process's hash. ARGV: hash prefix, this process, key digest, now ms,
# ttl ms. Registers this process (its hash outlives the stream being created), forgets processes whose
# count expired, and returns what the others hold: in total, and for this key.
ADMIT = """
redis.call('ZADD', KEYS[1], ARGV[4] + ARGV[5], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
local total, key = 0, 0
for _, other in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if other ~= ARGV[2] then
    local held = redis.call('HMGET', ARGV[1] .. other, '*', ARGV[3])
    total = total + (tonumber(held[1]) or 0)
    key = key + (tonumber(held[2]) or 0)
  end
end
return {total, key}
"""

log = logging.getLogger("tornado_grok")

PREFIX = "tg:rs:"
# KEYS: meta, events, owner. ARGV: retention seconds. A stream's end, in one command.
FINISH = """
redis.call('HSET', KEYS[1], 'state', 'ended')
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
"""
# KEYS: meta, owner. ARGV: key digest, token digest, dialect, owner, meta ttl s, owner ttl ms.
CREATE = """
redis.call('HSET', KEYS[1], 'key', ARGV[1], 'token', ARGV[2], 'dialect', ARGV[3], 'state', 'running',
           'owner', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[6])
"""
WRITE_TIMEOUT = 1.0  # seconds for one pipeline of writes: a late batch is still worth writing
# Seconds the writer gathers events before one pipeline: fewer, larger XADDs (a stream's events of
# that time are one entry). Readers on this process never wait for it; a reader elsewhere sees an
# event at most this much later.
WRITE_INTERVAL = 0.005
POOL_SIZE = 100  # connections of the shared client (redis-py's default, stated)


class Pool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool: a burst of commands waits (up to WRITE_TIMEOUT) for a free
    connection instead of failing at once; past that, MaxConnectionsError (the pool is full, which
    is not Redis being unreachable)."""

    async def get_connection(self, *args, **kwargs):
        try:
            return await super().get_connection(*args, **kwargs)
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError) and str(exc) == "No connection available.":
                raise MaxConnectionsError("all %d connections in use" % self.max_connections) from None
            raise


def connect(url: str, timeout: float, single: bool = False) -> aioredis.Redis:
    """A client of raw bytes whose commands answer within `timeout` seconds; `single`: one
    connection of its own (the live tails' XREAD BLOCK)."""
    pool = Pool.from_url(url, socket_connect_timeout=WRITE_TIMEOUT, socket_timeout=timeout,
                         max_connections=1 if single else POOL_SIZE, timeout=WRITE_TIMEOUT,
                         retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
    return aioredis.Redis(connection_pool=pool, single_connection_client=single)


def store_error(exc) -> GatewayError:
    """What a reader is told when a Redis command failed: busy (the pool is full), or unreachable."""
    if isinstance(exc, MaxConnectionsError):
        return GatewayError(503, "the stream store's connections are all in use; resume again shortly",
                            code="stream_store_busy", headers={"Retry-After": "1"})
    return store_unavailable()


def written(results) -> None:
    """Raises the first error of a pipeline's results, except an XADD of an entry Redis already has."""
    for result in results:
        if isinstance(result, Exception) and "equal or smaller" not in str(result):
            raise result


def keys(stream_id: str) -> tuple:
    base = PREFIX + stream_id
    return base + ":m", base + ":e", base + ":o", base + ":c", base + ":r"


def response_key(response_id: str) -> str:
    return PREFIX + "resp:" + response_id


def index_key(stream_id: str) -> str:
    return PREFIX + stream_id + ":q"


class RedisStoredStream(StoredStream):
    """A StoredStream of this process, mirrored to Redis by the store's writer."""

    def __init__(self, stream_id, key_digest, token, config, store):
        super().__init__(stream_id, key_digest, token, config)
        self.store = store
        self.unwritten: list = []  # framed events Redis does not have yet (kept until a write succeeds)
        self.created = False  # the CREATE script ran (else the writer runs it first)
        self.written_end = False
        self.written_response = False
        self.in_redis = 0  # bytes of events in Redis, counted in this process's budget hash
        self.charging = 0  # what the writer's pipeline in flight adds to (or takes from) in_redis
        self.sent = None  # what the writer's pipeline in flight holds: (events, end, response, created)

    def append(self, data: bytes) -> bytes:
        was_resumable = self.resumable
        framed = super().append(data)
        if was_resumable:
            if self.resumable:
                self.unwritten.append(framed)
            self.store.dirty[self] = None
        return framed

    def finish(self) -> None:
        super().finish()
        self.store.dirty[self] = None
        self.store.wake.set()

    def publish(self) -> None:
        super().publish()
        if self.unwritten:
            self.store.wake.set()

    def write_to(self, pipe, c) -> None:
        """Queues what Redis does not have of this stream yet (its new events, its end) on the
        writer's pipeline; written() takes it off once the pipeline succeeded."""
        m, e, o, _, _ = keys(self.id)
        self.charging = 0
        if not self.created:
            pipe.eval(CREATE, 2, m, o, self.key_digest, self.token_digest, self.dialect, self.store.instance,
                      int(c.total_timeout + c.resume_retention) + 60, int(3000 * c.resume_heartbeat))
        if not self.resumable:
            self.charge_redis(pipe, -self.in_redis)
            self.sent = (0, False, False, True)
            if self.unwritten is not None:
                self.sent = (None, False, False, True)
                pipe.hset(m, "state", "overflow")
                pipe.delete(e, index_key(self.id))
            return
        n = len(self.unwritten)
        if n:
            if self.seqs is not None:
                self.index_to(pipe, c)
            events = b"".join(self.unwritten)
            pipe.xadd(e, {b"e": events}, id="%d-0" % self.count, maxlen=c.resume_max_events, approximate=False)
            if not self.in_redis:  # its first events: they expire with the stream, should this process die
                pipe.expire(e, int(c.total_timeout + c.resume_retention) + 60)
            self.charge_redis(pipe, len(events))
        end = self.ended and not self.written_end
        if end:
            pipe.xadd(e, {b"end": b"1"}, id="%d-1" % self.count, maxlen=c.resume_max_events, approximate=False)
        response = self.response_id is not None and not self.written_response
        if response:
            pipe.set(response_key(self.response_id), self.id, ex=int(c.total_timeout + c.resume_retention) + 60)
        if end:
            pipe.eval(FINISH, 3, m, e, o, int(c.resume_retention) + 1)
            if self.response_id is not None:
                pipe.expire(response_key(self.response_id), int(c.resume_retention) + 1)
            if self.seqs is not None:
                pipe.expire(index_key(self.id), int(c.resume_retention) + 1)
        self.sent = (n, end, response, True)

    def written(self) -> None:
        """The writer's pipeline succeeded: what write_to queued is in Redis."""
        n, end, response, created = self.sent
        self.sent = None
        if n is None:
            self.unwritten = None
        elif n:
            del self.unwritten[:n]
        self.written_end = self.written_end or end
        self.written_response = self.written_response or response
        self.created = self.created or created
        self.in_redis += self.charging
        self.charging = 0

    def charge_redis(self, pipe, n: int) -> None:
        """Counts n bytes (or releases -n) in this process's budget hash, in total and for the key."""
        if n:
            self.charging += n
            h = BUDGET + ":" + self.store.instance
            pipe.hincrby(h, "*", n)
            pipe.hincrby(h, self.key_digest, n)

    def index_to(self, pipe, c) -> None:
        """The index entries of the blocks being written (a batch holds as many as the writer
        gathered): each block's first event id, by sequence_number."""
        i = len(self.blocks) - len(self.unwritten)  # blocks are never trimmed while resumable
        q = index_key(self.id)
        pipe.zadd(q, dict(zip(map(str, self.firsts[i:]), self.seqs[i:])))
        if not self.in_redis:
            pipe.expire(q, int(c.total_timeout + c.resume_retention) + 60)


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


class RedisStreamStore(MemoryStreamStore):
    """Resumable streams in Redis Streams; this process's own streams also in memory."""

    def __init__(self, config, client=None, blocking=None):
        super().__init__(config)
        self.redis = client or connect(config.redis_url, WRITE_TIMEOUT)
        # The live tails' XREAD BLOCK waits at most one heartbeat: its answer is due within one write timeout more.
        self.blocking = blocking or connect(config.redis_url, config.resume_heartbeat + WRITE_TIMEOUT, single=True)
        self.write_timeout = WRITE_TIMEOUT
        self.instance = secrets.token_hex(8)
        self.beats = 0
        self.tail = RemoteTail(self, self.blocking)
        self.remote_readers: set = set()  # this process's RemoteReaders (the sweep keeps them alive)
        self.dirty: dict = {}  # streams with something to write, in order
        self.wake = asyncio.Event()
        self.background: list = []
        self.down = False

    def _start(self) -> None:
        if not self.background:
            self.background = [asyncio.ensure_future(self._writer()), asyncio.ensure_future(self._heartbeat())]

    def new_stream(self, stream_id: str, key_digest: str, token: str) -> StoredStream:
        return RedisStoredStream(stream_id, key_digest, token, self.config, self)

    async def admit(self, key_digest: str) -> str | None:
        """The budget check across processes: what the others hold (in Redis) lowers this process's
        limits; if Redis does not answer, the last figures seen stand."""
        c = self.config
        ttl = int(1000 * (c.total_timeout + c.resume_retention)) + 120000
        try:
            total, key = await self.redis.eval(ADMIT, 2, BUDGET, BUDGET + ":" + self.instance, BUDGET + ":",
                                               self.instance, key_digest, int(time.time() * 1000), ttl)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)
        else:
            self.budget.seen(int(total), key_digest, int(key))
        return await super().admit(key_digest)

    def dropped(self, entry) -> None:
        """Its bytes leave this process's budget hash too (the writer no longer sees a dropped stream)."""
        super().dropped(entry)
        if entry.in_redis:
            task = asyncio.ensure_future(self._release(entry.key_digest, entry.in_redis))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            entry.in_redis = 0

    async def _release(self, key_digest: str, n: int) -> None:
        h = BUDGET + ":" + self.instance
        try:
            await self.redis.pipeline(transaction=False).hincrby(h, "*", -n).hincrby(h, key_digest, -n).execute()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)  # the hash expires with the streams it counted

    async def create(self, key_digest: str, dialect: str) -> tuple:
        self._start()
        stream, token = await super().create(key_digest, dialect)
        c = self.config
        m, e, o, _, _ = keys(stream.id)
        ttl = int(c.total_timeout + c.resume_retention) + 60
        try:
            # Awaited: the resume URL goes out with the first event, and must find the stream anywhere.
            await self.redis.eval(CREATE, 2, m, o, key_digest, stream.token_digest, dialect, self.instance,
                                  ttl, int(3000 * c.resume_heartbeat))
            stream.created = True
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)  # resumable here only until the writer gets CREATE through
            self.dirty[stream] = None
            self.wake.set()
        return stream, token

    async def find(self, stream_id: str):
        local = self.entries.get(stream_id)
        if local is not None:
            return local
        m, e, _, _, _ = keys(stream_id)
        try:
            meta, last = await self.redis.pipeline(transaction=False).hgetall(m).xrevrange(e, count=1).execute()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            if not isinstance(exc, MaxConnectionsError):
                self._failed(exc)
            raise store_error(exc)
        if not meta:
            return None
        stream = RemoteStream(self, stream_id, meta)
        # The events Redis holds: all of them once the stream ended (a Last-Event-ID past them is a
        # 400); while it runs, those its owner wrote so far (see RemoteReader.wait_for).
        stream.held = int(last[0][0].split(b"-")[0]) if last else 0
        if stream.ended:
            stream.count = stream.held
        return stream

    def remember(self, response_id: str, entry) -> None:
        super().remember(response_id, entry)
        self.dirty[entry] = None
        self.wake.set()

    async def find_response(self, response_id: str):
        local = await super().find_response(response_id)
        if local is not None:
            return local
        try:
            stream_id = await self.redis.get(response_key(response_id))
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)
            return None  # relayed upstream, as a response this store does not know
        if stream_id is None:
            return None
        try:
            return await self.find(stream_id.decode())
        except GatewayError:
            return None

    async def cancel(self, entry) -> bool:
        if isinstance(entry, StoredStream):
            return await super().cancel(entry)
        m, _, _, cancel, _ = keys(entry.id)
        await self.redis.set(cancel, b"1", ex=int(self.config.resume_retention) + 1)
        return entry.state == "running"

    async def _writer(self) -> None:
        c = self.config
        while True:
            await self.wake.wait()
            self.wake.clear()
            await asyncio.sleep(WRITE_INTERVAL)
            dirty, self.dirty = self.dirty, {}
            dirty = [stream for stream in dirty if self.entries.get(stream.id) is stream]  # not yet dropped
            pipe = self.redis.pipeline(transaction=False)
            for stream in dirty:
                stream.write_to(pipe, c)
            if not len(pipe):
                continue
            try:
                # Bounded by the client's socket_timeout (WRITE_TIMEOUT).
                written(await pipe.execute(raise_on_error=False))
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._failed(exc)
                for stream in dirty:
                    stream.sent = None
                # Kept, ahead of what came since, and sent again a heartbeat later.
                self.dirty = dict.fromkeys(dirty + list(self.dirty))
                await asyncio.sleep(c.resume_heartbeat)
                self.wake.set()
                continue
            self._recovered()
            for stream in dirty:
                stream.written()

    async def _heartbeat(self) -> None:
        """Owner heartbeats of this process's running streams; their cancel flags and remote readers."""
        c = self.config
        while True:
            await asyncio.sleep(c.resume_heartbeat)
            running = [s for s in self.entries.values() if s.relay is not None]
            if not running:
                continue
            self.beats += 1
            beat = "%s:%d" % (self.instance, self.beats)  # a new value every beat (streamtail_redis)
            pipe = self.redis.pipeline(transaction=False)
            for stream in running:
                m, e, o, cancel, r = keys(stream.id)
                pipe.set(o, beat, px=int(3000 * c.resume_heartbeat))
                pipe.exists(cancel)
                pipe.exists(r)
            try:
                out = await pipe.execute()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._failed(exc)
                continue
            now = time.monotonic()
            for i, stream in enumerate(running):
                if out[3 * i + 2]:
                    stream.left_at = now  # a reader on another process
                if out[3 * i + 1] and stream.relay is not None:
                    stream.relay.cancel(gone("the stream was cancelled (DELETE)"))

    def _failed(self, exc) -> None:
        if not self.down:
            self.down = True
            log.error("stream store: Redis at %s failed (%s); resumable streams resume on this process "
                      "only until it answers", safe_url(self.config.redis_url), exc)

    def _recovered(self) -> None:
        if self.down:
            self.down = False
            log.warning("stream store: Redis at %s answers again", safe_url(self.config.redis_url))

    def sweep(self, now: float) -> None:
        super().sweep(now)
        for reader in list(self.remote_readers):
            reader.check(now, self.config.keepalive_interval)

    def state(self) -> dict:
        return dict(super().state(), backend="redis", redis_down=self.down, tail=self.tail.state())

    async def close(self) -> None:
        self.tail.close()
        for task in self.background:
            task.cancel()
        await self.redis.aclose(close_connection_pool=True)
        await self.blocking.aclose(close_connection_pool=True)
