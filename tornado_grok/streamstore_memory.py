"""The memory store of resumable streams (stream_store = "memory"): MemoryStreamStore keeps the
StoredStreams of this process, the response ids of its Responses streams, the tasks running their
relays, and the sweep (keep-alives, resume_window, resume_retention); the Redis store
(streamstore_redis.py) builds on it.
"""

import asyncio
import logging

from .errors import GatewayError
from .readers import ReaderSlots
from .relay import Outcome
from .stored_stream import StoredStream, gone, new_handle
from .streambudget import StreamBudget

log = logging.getLogger("tornado_grok")


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
