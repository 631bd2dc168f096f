"""The cyclic garbage collector, set for a server with many requests in flight.

CPython frees almost everything by reference counting; the collector is for cycles. What it costs is
the objects it walks: each collection of a generation walks every object in it and the younger ones.
With its defaults (a young collection per 700 net new container objects, the older generations
after 10 of the one below) a busy gateway collects all the time, and each collection walks the live
requests: under 1,000 open streams a full collection took 50-100 ms, a stall every request in
flight waited out (docs/performance.md has the measurements and bench/suspects.py makes them).

So, once the gateway has started:
- everything made at start (modules, the app, the routes, the protobuf descriptors) is moved out of
  the collector's reach (gc.freeze): it lives as long as the process, and a collection no longer
  walks it;
- the young generation is collected per YOUNG_THRESHOLD net new objects instead of 700. A request
  on the relay paths leaves no cycle behind (relay.unlink, UpstreamCall._done), so its objects are
  freed by reference counting as it ends and never count towards that threshold; what does is
  growth in requests in flight. Cycles that other paths leave are still collected, a few thousand
  objects later.
"""

import collections
import gc

YOUNG_THRESHOLD = 5000


def settle() -> None:
    """Called once the gateway has started, before it serves."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


def sweep(top: int = 20) -> dict:
    """A full collection now, and what it found unreachable (for POST /debug/gc): the count, the most
    common types, and the collector's counters. A stall as long as a full collection: a debug tool,
    off by default."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        unreachable = gc.collect()
        kinds = collections.Counter("%s.%s" % (type(o).__module__, type(o).__qualname__) for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    gc.collect()  # the cycles SAVEALL kept are freed now
    return {
        "unreachable": unreachable,
        "types": dict(kinds.most_common(top)),
        "collections": [g["collections"] for g in gc.get_stats()],
        "frozen": gc.get_freeze_count(),
        "threshold": list(gc.get_threshold()),
    }
