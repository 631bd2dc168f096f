"""The budget of stored stream bytes: how much of the resumable streams' stored events one key may
hold (resume_key_bytes) and all keys together (resume_total_bytes).

Each StoredStream holds its key's Share and charges it with every block it stores; blocks it drops
(trim, the sweep after resume_retention) are released. A key or the total over its budget makes the
stream that crossed it stop being resumable (as resume_max_bytes does), and a new stream of that key
is not resumable at all (streams.start: `X-Resumable: false`, `X-Resumable-Reason: <the setting>`).

With the Redis store the budget is shared by every process: each process reports the bytes it wrote
to Redis (streamstore_redis.py), and what the others hold (`others`) lowers the limits here. The
per-append check stays two integer comparisons.
"""


class Share:
    """One key's stored bytes in this process, and its limit (the key's budget less what other
    processes hold for it)."""

    __slots__ = ("budget", "digest", "bytes", "streams", "limit")

    def __init__(self, budget: "StreamBudget", digest: str):
        self.budget = budget
        self.digest = digest
        self.bytes = 0
        self.streams = 0
        self.limit = budget.key_bytes - budget.others.get(digest, 0)

    def charge(self, n: int) -> bool:
        """Counts n more stored bytes; whether this key or all keys are now over their budget."""
        self.bytes += n
        budget = self.budget
        budget.total += n
        return self.bytes > self.limit or budget.total > budget.limit

    def release(self, n: int) -> None:
        self.bytes -= n
        self.budget.total -= n


class StreamBudget:
    """The stored bytes of this process's resumable streams, per key and in total."""

    def __init__(self, key_bytes: int, total_bytes: int):
        self.key_bytes = key_bytes
        self.total_bytes = total_bytes
        self.total = 0
        self.limit = total_bytes
        self.shares: dict = {}  # key digest -> Share, while the key has a stream here
        self.others: dict = {}  # key digest -> bytes other processes hold (Redis store; last seen)
        self.others_total = 0

    def refusal(self, digest: str) -> str | None:
        """The setting a new stream of this key would be over (its name), or None: it may be resumable."""
        share = self.shares.get(digest)
        held = share.bytes if share is not None else 0
        if held + self.others.get(digest, 0) >= self.key_bytes:
            return "resume_key_bytes"
        if self.total + self.others_total >= self.total_bytes:
            return "resume_total_bytes"
        return None

    def open(self, digest: str) -> Share:
        """The share a new stream of this key charges."""
        share = self.shares.get(digest)
        if share is None:
            share = self.shares[digest] = Share(self, digest)
        share.streams += 1
        return share

    def close(self, share: Share, nbytes: int) -> None:
        """A stream dropped from the store: its bytes are released."""
        share.release(nbytes)
        share.streams -= 1
        if share.streams <= 0 and self.shares.get(share.digest) is share:
            del self.shares[share.digest]

    def seen(self, others_total: int, digest: str, others_key: int) -> None:
        """What other processes hold (read from Redis), in total and for one key."""
        self.others_total = max(0, others_total)
        self.limit = self.total_bytes - self.others_total
        if others_key > 0:
            self.others[digest] = others_key
        else:
            self.others.pop(digest, None)
        share = self.shares.get(digest)
        if share is not None:
            share.limit = self.key_bytes - max(0, others_key)

    def state(self) -> dict:
        return {"bytes": self.total, "keys": len(self.shares), "others_bytes": self.others_total}
