"""The budget of stored stream bytes: how much of the resumable streams' stored events one key may
hold (resume_key_bytes) and all keys together (resume_total_bytes).

Each StoredStream holds its key's Share and charges it with every block it stores; blocks it drops
(trim, the sweep after resume_retention) are released. A key or the total over its budget makes the
stream that crossed it stop being resumable (as resume_max_bytes does), and a new stream of that key
is not resumable at all (streams.start: `X-Resumable: false`, `X-Resumable-Reason: <the setting>`).

With the Redis store the budget is shared by every process: each process reports the bytes it wrote
to Redis (streamwrite_redis.py), and what the others hold (`others`) lowers the limits here. The
per-append check stays two integer comparisons.

A budget that a stream crossed stays closed to new streams until what it holds is back under
REOPEN of it: otherwise, while crossing streams release what they stored, each new stream would be
admitted only to cross it in turn, and the process would churn through stored bytes it then drops.
"""

REOPEN = 0.75


class Share:
    """One key's stored bytes in this process, and its limit (the key's budget less what other
    processes hold for it)."""

    __slots__ = ("budget", "digest", "bytes", "streams", "limit", "crossed")

    def __init__(self, budget: "StreamBudget", digest: str):
        self.budget = budget
        self.digest = digest
        self.bytes = 0
        self.streams = 0
        self.limit = budget.key_bytes - budget.others.get(digest, 0)
        self.crossed = False

    def charge(self, n: int) -> bool:
        """Counts n more stored bytes; whether this key or all keys are now over their budget."""
        self.bytes += n
        budget = self.budget
        budget.total += n
        if self.bytes > self.limit:
            self.crossed = True
            return True
        if budget.total > budget.limit:
            budget.crossed = True
            return True
        return False

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
        self.crossed = False

    def refusal(self, digest: str) -> str | None:
        """The setting a new stream of this key would be over (its name), or None: it may be resumable."""
        share = self.shares.get(digest)
        held = (share.bytes if share is not None else 0) + self.others.get(digest, 0)
        if share is not None and share.crossed:
            share.crossed = held > self.key_bytes * REOPEN
        if held >= self.key_bytes or (share is not None and share.crossed):
            return "resume_key_bytes"
        total = self.total + self.others_total
        if self.crossed:
            self.crossed = total > self.total_bytes * REOPEN
        if total >= self.total_bytes or self.crossed:
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
