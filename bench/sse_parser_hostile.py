"""The SSE parser against a hostile upstream's shapes: CPU seconds to reach max_event_size.

    python bench/sse_parser_hostile.py                  # 1, 2, 4, 8 MiB
    python bench/sse_parser_hostile.py --parser FILE    # another sse.py (e.g. an older commit's)

Shapes, fed in libcurl's 16 KiB reads: `data:` lines that never get their blank line, and one
`data:` line that never ends. A linear parser's time doubles with the size; a quadratic one's
quadruples. Prints figures only.
"""

import argparse
import importlib.util
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READ = 16 * 1024


def load(path: str | None):
    if path is None:
        sys.path.insert(0, ROOT)
        from tornado_grok import sse
        return sse
    spec = importlib.util.spec_from_file_location("sse_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(sse, limit: int, read: bytes, first: bytes = b"") -> float:
    try:
        parser = sse.SSEParser(limit)
    except TypeError:  # an older parser with its bound fixed in MAX_EVENT_BYTES
        sse.MAX_EVENT_BYTES = limit
        parser = sse.SSEParser()
    start = time.process_time()
    try:
        if first:
            parser.feed(first)
        for _ in range(4 * limit // len(read) + 2):
            parser.feed(read)
    except sse.SSEError:
        return time.process_time() - start
    raise SystemExit("the parser accepted %d bytes without an error" % (4 * limit))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parser", help="path of an sse.py to measure instead of this tree's")
    p.add_argument("--mib", type=int, nargs="*", default=[1, 2, 4, 8])
    args = p.parse_args()
    sse = load(args.parser)
    lines = (b'data: {"a":1}\n' * (READ // 14))[:READ]
    lines = lines[:lines.rfind(b"\n") + 1]
    print("%8s  %22s  %22s" % ("bound", "data: lines, no blank", "one endless line"))
    for mib in args.mib:
        limit = mib * 1024 * 1024
        print("%6d MiB  %20.3f s  %20.3f s" % (mib, run(sse, limit, lines), run(sse, limit, b"a" * READ, b"data: ")))


if __name__ == "__main__":
    main()
