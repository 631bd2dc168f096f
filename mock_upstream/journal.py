"""The journal: one entry per request the mock received, and a way to wait for entries to end.

`seq` numbers start at 1 and never restart, not even after `clear()`, so a test that holds a seq
never confuses two requests. Waiting uses a tornado Condition, notified on every change.
"""

import time
from collections import OrderedDict

from tornado.ioloop import IOLoop
from tornado.locks import Condition

ENDED = ("complete", "client_closed", "fault")
SECRET_HEADERS = ("authorization", "x-api-key")


def mask_secret(value: str) -> str:
    """`Bearer xai-abcdefgh1234` -> `Bearer xai-…1234`; short secrets are hidden completely."""
    scheme, sep, key = value.partition(" ")
    if not sep:
        scheme, key = "", value
    shown = f"{key[:4]}…{key[-4:]}" if len(key) >= 12 else "…"
    return f"{scheme} {shown}" if scheme else shown


def public_headers(headers) -> dict:
    """Request headers, names lower-cased, secrets masked."""
    out = {}
    for name, value in headers.get_all():
        name = name.lower()
        if name in SECRET_HEADERS:
            value = mask_secret(value)
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


class Journal:
    """Entries (plain dicts) by seq, bounded to the most recent `limit`."""

    def __init__(self, limit: int = 10000):
        self.limit = limit
        self._entries = OrderedDict()
        self._seq = 0
        self._changed = Condition()

    def add(self, method: str, path: str, headers: dict, body, test_id: str | None) -> dict:
        self._seq += 1
        entry = {
            "seq": self._seq, "time": time.time(), "method": method, "path": path,
            "headers": headers, "body": body, "scenario": None, "test_id": test_id,
            "status": None, "events": 0, "ended": None, "ended_at": None, "tcp_nodelay": None,
        }
        self._entries[self._seq] = entry
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)
        self._changed.notify_all()
        return entry

    def end(self, entry: dict, how: str) -> None:
        """Mark an entry ended (the first call wins: a fault is not later a client close)."""
        if entry["ended"] is None:
            entry["ended"] = how
            entry["ended_at"] = time.time()
            self._changed.notify_all()

    def entries(self, test_id: str | None = None) -> list:
        return [e for e in self._entries.values() if test_id is None or e["test_id"] == test_id]

    def clear(self) -> None:
        self._entries.clear()
        self._changed.notify_all()

    def _find(self, seq: int | None, test_id: str | None) -> dict | None:
        if seq is not None:
            return self._entries.get(seq)
        entries = self.entries(test_id)
        return entries[-1] if entries else None

    async def wait(self, seq: int | None, ended: bool, timeout: float, test_id: str | None = None):
        """Wait until entry `seq` (or the latest one) exists, and has ended if `ended`.

        Returns (entry or None, reached). Without `seq`, "the latest" is fixed at the first entry
        that exists, so a later request cannot replace the one being waited for.
        """
        deadline = IOLoop.current().time() + timeout
        while True:
            entry = self._find(seq, test_id)
            if entry is not None:
                seq = entry["seq"]
                if not ended or entry["ended"] is not None:
                    return entry, True
            if not await self._changed.wait(timeout=deadline):
                return self._find(seq, test_id), False
