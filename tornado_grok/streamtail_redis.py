"""The live tails of the Redis streams this process reads for other processes' streams: ONE
`XREAD BLOCK` loop on ONE connection for all of them, fanned out to the local readers
(streamread_redis.RemoteReader), however many there are.

A reader first catches up with `XRANGE` (one short command on the shared pool), then takes the live
entries this loop hands it. The loop also watches, once per `resume_heartbeat`, each followed
stream's state and its owner's heartbeat (one pipeline for all), and tells the owner that a reader is
there (`:r`).

The owner's heartbeat is a value that changes at every beat. The owner is "lost" only when that
value has not changed for OWNER_GRACE heartbeats of time in which this process reached Redis: a
Redis that stalled (SIGSTOP, a long fork) lets the heartbeat key expire by its own clock, and that
says nothing about the owner. When Redis fails, the loop tries again every heartbeat; its readers
keep getting keep-alives (the store's sweep sends them, not this loop) and wait, for at most
`resume_window`, then end with the error event `stream_store_unavailable`.

To follow a new stream at once, the loop's `XREAD` also reads this process's wake stream
(`tg:rs:wake:<instance>`): a new follower adds an entry to it, which ends the pending `XREAD`.
"""

import asyncio
import logging
import time

from redis.exceptions import RedisError

from .errors import GatewayError

log = logging.getLogger("tornado_grok")

# Heartbeats (plus one write timeout) without a new owner beat, counted while Redis answers.
OWNER_GRACE = 3


def store_unavailable() -> GatewayError:
    return GatewayError(503, "the stream store (Redis) is unreachable; resume again shortly",
                        code="stream_store_unavailable", headers={"Retry-After": "1"})


class Follow:
    """One followed stream: its keys, its local readers, the newest entry id handed to them."""

    def __init__(self, stream_id: str, keys: tuple, now: float):
        self.id = stream_id
        self.m, self.e, self.o, self.r = keys
        self.readers: set = set()
        self.cursor = None  # the newest entry id handed out; None until a reader has caught up
        self.beat = None
        self.beat_at = now  # when the owner's beat last changed (or Redis came back)

    def fail(self, err: GatewayError) -> None:
        for reader in tuple(self.readers):
            reader.fail_later(err)


class RemoteTail:
    """The XREAD loop of this process (see the module docstring)."""

    def __init__(self, store, connection):
        self.store = store
        self.connection = connection  # one connection, used by this loop only
        self.follows: dict = {}  # events key (bytes) -> Follow
        self.task = None
        self.down_since = None
        self.wake_key = "tg:rs:wake:" + store.instance

    def join(self, reader, stream_id: str, keys: tuple) -> Follow:
        """Registers a reader of a running stream: from now on it is handed every entry the loop reads."""
        e = keys[1].encode()
        follow = self.follows.get(e)
        if follow is None:
            follow = self.follows[e] = Follow(stream_id, keys, time.monotonic())
        follow.readers.add(reader)
        return follow

    async def start(self, follow: Follow, cursor: bytes) -> None:
        """A reader of `follow` caught up to entry `cursor`: the loop reads from there (if nobody did yet)."""
        if follow.cursor is not None or self.follows.get(follow.e.encode()) is not follow:
            return
        follow.cursor = cursor
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
            self.task.add_done_callback(self._ran)
            return
        try:  # ends the pending XREAD, so that the next one reads this stream too
            await self.store.redis.pipeline(transaction=False).xadd(self.wake_key, {b"w": b"1"}, maxlen=1) \
                .pexpire(self.wake_key, 60000).execute()
        except (RedisError, OSError, asyncio.TimeoutError):
            pass  # the loop is failing too; it reads this stream with its next XREAD

    def _ran(self, task) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Nobody awaits this task: say what broke, and end its readers rather than leave them waiting.
            log.error("error following resumable streams in Redis", exc_info=task.exception())
            for follow in list(self.follows.values()):
                follow.fail(GatewayError(500, "internal error while following the stream", code="internal_error"))

    def leave(self, reader, follow: Follow) -> None:
        follow.readers.discard(reader)
        if not follow.readers and self.follows.get(follow.e.encode()) is follow:
            del self.follows[follow.e.encode()]

    async def _run(self) -> None:
        c = self.store.config
        next_check = 0.0
        while self.follows:
            live = {e: f.cursor for e, f in self.follows.items() if f.cursor is not None}
            if not live:
                return  # every reader is still catching up; the first to finish starts the loop again
            now = time.monotonic()
            try:
                if now >= next_check:
                    next_check = now + c.resume_heartbeat
                    await self._check(now, c)
                live[self.wake_key.encode()] = "$"
                block = max(1, int(1000 * (next_check - time.monotonic())))
                found = await self.connection.xread(live, block=block, count=1000)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._down(exc, c)
                next_check = 0.0
                await asyncio.sleep(c.resume_heartbeat)  # Redis fails: try again a heartbeat later
                continue
            self._up()
            for e, entries in found or ():
                follow = self.follows.get(e)
                if follow is None or follow.cursor is None or not entries:
                    continue
                follow.cursor = entries[-1][0]
                for reader in tuple(follow.readers):
                    reader.deliver(entries)

    async def _check(self, now: float, c) -> None:
        """Each followed stream's state and owner beat; tells each owner that a reader is here."""
        follows = list(self.follows.values())
        pipe = self.store.redis.pipeline(transaction=False)
        for f in follows:
            pipe.hget(f.m, "state").get(f.o).set(f.r, b"1", px=int(2000 * c.resume_heartbeat))
        out = await pipe.execute()
        self._up()
        grace = OWNER_GRACE * c.resume_heartbeat + self.store.write_timeout
        for i, f in enumerate(follows):
            state, beat = out[3 * i], out[3 * i + 1]
            if beat is not None and beat != f.beat:  # a key that expired is not a beat
                f.beat, f.beat_at = beat, now
            if state is None or state == b"overflow":
                f.fail(GatewayError(410, "the stream is no longer resumable (it expired or went over its cap)",
                                    code="stream_not_resumable"))
            elif state == b"running" and now - f.beat_at > grace:
                f.fail(GatewayError(502, "the gateway process relaying this stream stopped", code="stream_owner_lost"))
            # "ended": its end entry is in the stream, and this loop hands it out

    def _down(self, exc, c) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning("following resumable streams of other processes: Redis failed (%s); readers wait "
                        "for it (with keep-alives) for up to resume_window (%gs)", exc, c.resume_window)
        elif now - self.down_since > c.resume_window:
            for follow in list(self.follows.values()):
                follow.fail(store_unavailable())

    def _up(self) -> None:
        if self.down_since is not None:
            self.down_since = None
            now = time.monotonic()
            for f in self.follows.values():
                f.beat_at = now  # the owner gets its grace again: its heartbeats failed too

    def state(self) -> dict:
        return {"followed": len(self.follows), "readers": sum(len(f.readers) for f in self.follows.values()),
                "down": self.down_since is not None}

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
