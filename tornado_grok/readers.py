"""How many resume readers this process serves at once, per stream and per key.

A resume (GET /api/v1/streams/{id}, or GET /api/v1/responses/{id}?stream=true answered from the
stream store) takes nothing from the rate or concurrency limits, so without a cap of its own one key
could hold any number of readers, each costing bytes sent, CPU and (for a stream relayed by another
process) Redis reads. `resume_readers_per_stream` and `resume_readers_per_key` cap them; a reader
over either cap is refused with 429 `too_many_readers` and Retry-After. The request that started a
stream is not counted (it holds a concurrency slot); readers are counted against the key that
started the stream, whether they came with that key or with the stream's token. The counts are
per process, as the readers' costs are.
"""

import contextlib

from .errors import GatewayError

RETRY_AFTER = "1"


class ReaderSlots:
    """Counts of the readers in progress, by stream id and by key digest."""

    def __init__(self, per_stream: int, per_key: int):
        self.per_stream = per_stream
        self.per_key = per_key
        self.streams: dict = {}
        self.keys: dict = {}

    @contextlib.contextmanager
    def hold(self, key_digest: str, stream_id: str):
        """A reader's slot for as long as the block runs; GatewayError 429 when over a cap."""
        self.take(key_digest, stream_id)
        try:
            yield
        finally:
            self.give_back(key_digest, stream_id)

    def take(self, key_digest: str, stream_id: str) -> None:
        on_stream = self.streams.get(stream_id, 0)
        on_key = self.keys.get(key_digest, 0)
        if on_stream >= self.per_stream:
            raise too_many("this stream has %d readers (resume_readers_per_stream)" % on_stream)
        if on_key >= self.per_key:
            raise too_many("this key's streams have %d readers (resume_readers_per_key)" % on_key)
        self.streams[stream_id] = on_stream + 1
        self.keys[key_digest] = on_key + 1

    def give_back(self, key_digest: str, stream_id: str) -> None:
        for counts, name in ((self.streams, stream_id), (self.keys, key_digest)):
            left = counts.get(name, 0) - 1
            if left > 0:
                counts[name] = left
            else:
                counts.pop(name, None)

    def state(self) -> dict:
        return {"readers": sum(self.streams.values()), "keys": len(self.keys)}


def too_many(why: str) -> GatewayError:
    return GatewayError(429, "too many readers: %s; try again when one has finished" % why,
                        code="too_many_readers", headers={"Retry-After": RETRY_AFTER})
