"""Log output that never blocks the event loop: the access log and every `logging` record go through
one bounded queue to a thread that writes them to stderr.

A pipe nobody reads (a stuck log shipper, a terminal on pause) fills after ~64 KiB; a write to it
then blocks, and written from the IOLoop it would stop the whole process. Here only the writer
thread ever blocks on it. What does not fit in the queue meanwhile (`log_queue_bytes`) is dropped
and counted: the count is announced as a "N log lines dropped" line as soon as stderr takes
writes again (and at exit), and is the metric tornado_grok_log_lines_dropped_total.
"""

import logging
import logging.handlers
import os
import select
import sys
import threading

from tornado.ioloop import IOLoop

FLUSH_SECONDS = 5.0  # at shutdown, how long queued lines may take to be written
HANDOVER_SECONDS = 0.05  # the access log's lines go to the writer thread together, this often


class LogWriter:
    """Writes text to a file descriptor from a thread of its own; put() never blocks."""

    def __init__(self, fd: int, max_bytes: int):
        self.fd = fd
        self.max_bytes = max_bytes
        self.dropped = 0  # lines dropped since start
        self._reported = 0  # of those, the ones a "dropped" line has announced
        self._items: list[bytes] = []
        self._size = 0  # bytes queued or being written
        self._closing = False
        self._cond = threading.Condition(threading.Lock())
        self._thread = threading.Thread(target=self._run, name="tornado_grok-log", daemon=True)
        self._thread.start()

    def put(self, text: str, lines: int = 1) -> bool:
        """Queues `text` (`lines` lines, newline-terminated); False when it was dropped instead."""
        data = text.encode("utf-8", "backslashreplace")
        with self._cond:
            if self._closing or self._size + len(data) > self.max_bytes:
                self.dropped += lines
                return False
            self._items.append(data)
            self._size += len(data)
            self._cond.notify()
        return True

    def close(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Writes what is queued (waiting up to `timeout` s for stderr); True if all of it went out."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                items, self._items = self._items, []
                if not items and self._closing:
                    break
            data = b"".join(items)
            self._write(data)
            with self._cond:
                self._size -= len(data)
            self._report()
        self._report()

    def _report(self) -> None:
        with self._cond:
            unreported, self._reported = self.dropped - self._reported, self.dropped
        if unreported:
            self._write(b"%d log lines dropped: stderr was not read fast enough (log_queue_bytes = %d)\n"
                        % (unreported, self.max_bytes))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:  # someone made the descriptor non-blocking: wait for room
                select.select([], [self.fd], [], 1.0)
            except InterruptedError:
                continue
            except OSError:  # stderr closed or broken (EPIPE, EBADF, EIO, ENOSPC): count it lost
                with self._cond:
                    self.dropped += bytes(view).count(b"\n")
                    self._reported = self.dropped  # there is nowhere to announce it
                return


class _Handler(logging.handlers.QueueHandler):
    """Hands each logging record, formatted in the caller's thread, to the LogWriter."""

    def enqueue(self, record) -> None:
        text = record.msg  # prepare() made it the formatted message, traceback included
        self.queue.put(text + "\n", text.count("\n") + 1)


class AccessLog:
    """The access log: one line per request, handed to the writer thread together every
    HANDOVER_SECONDS, so that under load the thread wakes (and takes the interpreter's lock from
    the event loop) twenty times a second rather than once per loop turn; lines reach stderr at
    most that much later.

    Without a LogWriter (before setup(), or in a tool that never calls it) it writes to stderr.
    """

    def __init__(self):
        self.writer: LogWriter | None = None
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        if not self.lines:
            IOLoop.current().call_later(HANDOVER_SECONDS, self.flush)
        self.lines.append(line)

    def flush(self) -> None:
        lines, self.lines = self.lines, []
        if lines:
            text = "\n".join(lines) + "\n"
            if self.writer is not None:
                self.writer.put(text, len(lines))
            else:
                sys.stderr.write(text)
                sys.stderr.flush()


access_log = AccessLog()  # the process's one access log (stderr is one per process too)
_writers: list[LogWriter] = []  # the one setup() made (a list: no `global` statement needed)


def setup(max_bytes: int) -> LogWriter:
    """Sends the access log and every logging record of this process through a new LogWriter on stderr."""
    sys.stderr.flush()
    writer = LogWriter(sys.stderr.fileno(), max_bytes)
    handler = _Handler(writer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    access_log.writer = writer
    _writers[:] = [writer]
    return writer


def shutdown(timeout: float = FLUSH_SECONDS) -> None:
    """Writes out what is queued (clean shutdown). If stderr took it, later lines go to it directly."""
    writer = access_log.writer
    if writer is None:
        return
    access_log.flush()
    if writer.close(timeout):
        access_log.writer = None
        root = logging.getLogger()
        for old in list(root.handlers):
            if isinstance(old, _Handler):
                root.removeHandler(old)
        root.addHandler(_stderr_handler())


def dropped() -> int:
    """Log lines this process has dropped so far (for the metric)."""
    return _writers[0].dropped if _writers else 0


def _stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler
