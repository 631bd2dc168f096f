"""Resumable streams shared through Redis (stream_store = "redis"): resume on any gateway process.

The process that relays a stream (its owner) keeps it in memory as the memory store does (its own
readers never wait for Redis) and mirrors it to Redis, so a reader on another process can follow it:

  tg:rs:{id}:m  hash: the key's and the token's digests, the dialect, state (running, ended, overflow)
  tg:rs:{id}:e  a Redis Stream of batches of events: entry id "<last event id>-0", field e = the
                framed events (`id: N` ...); the last entry has field end = 1 (alone: "<id>-1").
                XADD with MAXLEN resume_max_events; XRANGE for what a reader missed, XREAD BLOCK
                for the live tail.
  tg:rs:{id}:o  the owner's heartbeat, SET every resume_heartbeat seconds with a TTL of three: a
                reader elsewhere that finds it gone while the stream runs ends with an error event.
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
order. When Redis fails, the stream goes on for its readers here (logged once per outage), and a
reader elsewhere that finds a gap in the ids ends with an error event instead of skipping events.
"""

import asyncio
import logging
import secrets
import time

import redis.asyncio as aioredis
from tornado.iostream import StreamClosedError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

from .errors import GatewayError
from .ratelimit_redis import safe_url
from .resumable import KEEPALIVE, MemoryStreamStore, SequenceFilter, StoredStream, error_event, gone

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


def connect(url: str, timeout: float | None) -> aioredis.Redis:
    """A client of raw bytes; `timeout` None for blocking reads (XREAD BLOCK bounds them itself)."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=WRITE_TIMEOUT, socket_timeout=timeout,
                                   retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))


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
        self.unwritten: list = []  # framed events not yet sent to Redis
        self.written_end = False
        self.written_response = False
        self.in_redis = 0  # bytes of events written to Redis, counted in this process's budget hash
        self.gone = False  # dropped from the store: its bytes leave the budget hash

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
        """Queues this stream's new events (and its end) on the writer's pipeline."""
        m, e, o, _, _ = keys(self.id)
        if self.gone or not self.resumable:
            self.charge_redis(pipe, -self.in_redis)
            if self.gone:
                return
        if not self.resumable:
            if self.unwritten is not None:
                self.unwritten = None
                pipe.hset(m, "state", "overflow")
                pipe.delete(e, index_key(self.id))
            return
        fields = {}
        if self.unwritten:
            if self.seqs is not None:
                self.index_to(pipe, c)
            fields[b"e"] = b"".join(self.unwritten)
            if not self.in_redis:  # its first events: expire with the stream, should this process die
                pipe.expire(e, int(c.total_timeout + c.resume_retention) + 60)
            self.charge_redis(pipe, len(fields[b"e"]))
            self.unwritten = []
        if self.ended and not self.written_end:
            self.written_end = True
            fields[b"end"] = b"1"
        if fields:
            entry_id = "%d-%d" % (self.count, 0 if b"e" in fields else 1)
            pipe.xadd(e, fields, id=entry_id, maxlen=c.resume_max_events, approximate=False)
        if self.response_id is not None and not self.written_response:
            self.written_response = True
            pipe.set(response_key(self.response_id), self.id, ex=int(c.total_timeout + c.resume_retention) + 60)
        if self.written_end:
            pipe.eval(FINISH, 3, m, e, o, int(c.resume_retention) + 1)
            if self.response_id is not None:
                pipe.expire(response_key(self.response_id), int(c.resume_retention) + 1)
            if self.seqs is not None:
                pipe.expire(index_key(self.id), int(c.resume_retention) + 1)

    def charge_redis(self, pipe, n: int) -> None:
        """Counts n bytes (or releases -n) in this process's budget hash, in total and for the key."""
        if n:
            self.in_redis += n
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
        self.count = float("inf")  # not known here; a cursor past the end reads nothing

    allows = StoredStream.allows

    def reader(self, handler, last_id: int):
        return RemoteReader(handler, self, last_id)

    def sequence_reader(self, handler, after: int):
        return SequenceRemoteReader(handler, self, after)


class RemoteReader:
    """A client reading a stream relayed by another process: XRANGE what it missed, then XREAD
    BLOCK the live tail, to the end marker; an error event if the owner stops heartbeating."""

    def __init__(self, handler, stream: RemoteStream, last_id: int):
        self.handler = handler
        self.stream = stream
        self.store = stream.store
        self.pos = last_id
        self.last_events = b""
        self.closed = False
        self.finished = False
        self.last_write = time.monotonic()

    async def run(self) -> None:
        store, c = self.store, self.store.config
        m, e, o, _, r = keys(self.stream.id)
        self.handler.set_sse_headers()
        await self._write(b"")
        block_ms = int(1000 * min(c.resume_heartbeat, c.keepalive_interval))
        try:
            entries = await store.redis.xrange(e, min="%d-1" % self.pos)
            cursor = "%d-0" % self.pos
            while not self.closed and not self.finished:
                if entries:
                    cursor = entries[-1][0]
                    await self._take(entries)
                    if self.finished or self.closed:
                        break
                await store.redis.set(r, b"1", px=int(2000 * c.resume_heartbeat))
                found = await store.blocking.xread({e: cursor}, block=block_ms, count=1000)
                entries = found[0][1] if found else []
                if not entries and not self.closed:
                    await self._check_owner(m, o)
                    if time.monotonic() - self.last_write >= c.keepalive_interval and not self.finished:
                        await self._write(KEEPALIVE)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("resuming stream %s from Redis (%s) failed: %s", self.stream.id,
                        safe_url(c.redis_url), exc)
            await self._fail(GatewayError(503, "the stream store (Redis) is unreachable; resume again shortly",
                                          code="stream_store_unavailable"))
        if not self.closed:
            self.closed = True
            try:
                self.handler.finish()
            except StreamClosedError:
                pass

    async def _take(self, entries) -> None:
        for entry_id, fields in entries:
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

    async def _check_owner(self, m: str, o: str) -> None:
        """Ends with an error event when the owner died (no heartbeat) or the stream became unreadable."""
        state, owner = await self.store.redis.pipeline(transaction=False).hget(m, "state").exists(o).execute()
        if state == b"running" and not owner:
            await self._fail(GatewayError(502, "the gateway process relaying this stream stopped",
                                          code="stream_owner_lost"))
        elif state == b"ended":
            self.finished = True  # its end entry is at or before the cursor: the client has it all
        elif state is None or state == b"overflow":
            await self._fail(gone("the stream is no longer resumable (it expired or went over its cap)"))

    async def _fail(self, err: GatewayError) -> None:
        event = error_event(self.stream.dialect, err, self.last_events)
        self.finished = True
        await self._write(b"id: %d\n%s" % (self.pos + 1, event))

    async def _write(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_write = time.monotonic()
        self.handler.write(data)
        flushed = self.handler.flush()
        if self.handler.unsent_bytes() > self.store.config.high_water_mark:
            try:
                await flushed  # backpressure: read no more from Redis until the client takes this
            except Exception:
                self.close()

    def close(self) -> None:
        self.closed = True


class SequenceRemoteReader(RemoteReader):
    """A RemoteReader of a Responses stream by sequence_number (resumable.SequenceFilter)."""

    def __init__(self, handler, stream: RemoteStream, after: int):
        super().__init__(handler, stream, 0)
        self.filter = SequenceFilter(after)

    async def run(self) -> None:
        after = self.filter.after
        if after >= 0:  # the index: the last batch that starts at or before `after`, nothing parsed
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
        self.blocking = blocking or connect(config.redis_url, None)
        self.instance = secrets.token_hex(8)
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
        super().dropped(entry)
        entry.gone = True
        self.dirty[entry] = None
        self.wake.set()

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
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)  # resumable here only: the stream itself is not refused
        return stream, token

    async def find(self, stream_id: str):
        local = self.entries.get(stream_id)
        if local is not None:
            return local
        try:
            meta = await self.redis.hgetall(keys(stream_id)[0])
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(exc)
            raise GatewayError(503, "the stream store (Redis) is unreachable; resume again shortly",
                               code="stream_store_unavailable", headers={"Retry-After": "1"})
        return RemoteStream(self, stream_id, meta) if meta else None

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
            pipe = self.redis.pipeline(transaction=False)
            for stream in dirty:
                stream.write_to(pipe, c)
            if not len(pipe):
                continue
            try:
                await pipe.execute()  # bounded by the client's socket_timeout (WRITE_TIMEOUT)
                self._recovered()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._failed(exc)

    async def _heartbeat(self) -> None:
        """Owner heartbeats of this process's running streams; their cancel flags and remote readers."""
        c = self.config
        while True:
            await asyncio.sleep(c.resume_heartbeat)
            running = [s for s in self.entries.values() if s.relay is not None]
            if not running:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for stream in running:
                m, e, o, cancel, r = keys(stream.id)
                pipe.set(o, self.instance, px=int(3000 * c.resume_heartbeat))
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

    def state(self) -> dict:
        return dict(super().state(), backend="redis", redis_down=self.down)

    async def close(self) -> None:
        for task in self.background:
            task.cancel()
        await self.redis.aclose()
        await self.blocking.aclose()
