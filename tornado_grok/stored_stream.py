"""The stored stream of a resumable stream: StoredStream (its events, each framed with its `id: N` by
`frame`, kept in order; its state, its readers, its relay; the sequence index of a Responses stream),
its capability handle (new_handle, token_digest) and the 410 errors of a stream that ended
(gone, not_resumable). A StoredStream is capped (resume_max_bytes, resume_max_events): over the cap it
stops being resumable (logged); from then on it keeps only what its attached readers still have to
take, and ends like a plain stream when the last of them leaves.
"""

import asyncio
import bisect
import hashlib
import hmac
import logging
import secrets
import time

from .errors import GatewayError
from .resumable_readers import SequenceReader, StreamReader
from .sequence_index import first_sequence

log = logging.getLogger("tornado_grok")


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
