"""A resumable stream's keys in Redis, the Lua scripts that create and end it, and RedisStoredStream:
a stream relayed by this process, kept in memory as the memory store does (its own readers never
wait for Redis) and mirrored to Redis by the store's writer (streamstore_redis.RedisStreamStore),
so that a reader on another process can follow it (streamread_redis.py).
"""

from .resumable import StoredStream

# The keys of a stream:
#
#   tg:rs:{id}:m  hash: the key's and the token's digests, the dialect, state (running, ended, overflow)
#   tg:rs:{id}:e  a Redis Stream of batches of events: entry id "<last event id>-0", field e = the
#                 framed events (`id: N` ...); the last entry has field end = 1 (alone: "<id>-1").
#                 XADD with MAXLEN resume_max_events; XRANGE for what a reader missed, and one
#                 XREAD BLOCK per process for the live tails (streamtail_redis.RemoteTail).
#   tg:rs:{id}:o  the owner's heartbeat, a value that changes every resume_heartbeat seconds (TTL of
#                 three): a reader elsewhere that sees it stand still (streamtail_redis.OWNER_GRACE)
#                 while the stream runs ends with an error event.
#   tg:rs:{id}:c  set by DELETE on any process; the owner reads it with its heartbeat and cancels.
#   tg:rs:{id}:r  refreshed by readers on other processes: the owner's resume_window counts them.
#   tg:rs:resp:{response id}  a Responses stream's id, for GET /responses/{id}?stream=true (set when
#                 its response.created event passes).
#   tg:rs:{id}:q  a Responses stream's index: sorted set of the first event id of each block (one
#                 upstream read), scored by that event's sequence_number, so that a reader anywhere
#                 seeks starting_after=N.
#   tg:rs:budget  sorted set of the processes holding stored streams (score: when their count expires);
#   tg:rs:budget:{process}  hash: the bytes of events this process wrote, in total (`*`) and per key
#                 digest (streambudget.py); expires with the last stream it could hold.

BUDGET = "tg:rs:budget"
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
# Seconds the writer gathers events before one pipeline: fewer, larger XADDs (a stream's events of
# that time are one entry). Readers on this process never wait for it; a reader elsewhere sees an
# event at most this much later.
WRITE_INTERVAL = 0.005


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
