"""Resumable streams shared through Redis (stream_store = "redis"), resumed on any gateway process:
RedisStreamStore, this process's streams in memory and in Redis (streamwrite_redis.py), found
there by readers elsewhere (streamread_redis.py), with its writer and heartbeat loops and the
budget check across processes.
"""

import asyncio
import logging
import secrets
import time

from redis.exceptions import MaxConnectionsError, RedisError

from .errors import GatewayError
from .health_redis import safe_url
from .resumable import MemoryStreamStore, StoredStream, gone
from .streampool_redis import WRITE_TIMEOUT, connect, store_error
from .streamread_redis import RemoteStream
from .streamtail_redis import RemoteTail
from .streamwrite_redis import BUDGET, CREATE, WRITE_INTERVAL, RedisStoredStream, keys, response_key, written

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


# Every key expires: resume_retention after the stream ended (total_timeout + resume_retention while
# it runs). All writes go through one writer task, one pipeline per IOLoop turn for all streams, in
# order. A write is taken off a stream's unwritten list only once its pipeline succeeded; a failed one
# is sent again a heartbeat later (every command is idempotent: an XADD's id is its last event's id,
# and one that Redis already has is refused as "equal or smaller", which counts as written). When
# Redis fails, the stream goes on for its readers here (logged once per outage), and a reader
# elsewhere that finds a gap in the ids ends with an error event instead of skipping events.


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
