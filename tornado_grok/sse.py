"""Incremental Server-Sent Events parsing and the few byte strings the gateway writes. No Tornado here.

The parser works on bytes and cuts only at line ends, so a UTF-8 character split across two reads
is joined before anyone decodes it; events split across reads, several events in one read, CRLF or
CR line ends and comment lines are all handled (WHATWG "event stream interpretation").
"""

import re

DONE = b"data: [DONE]\n\n"
DONE_PAYLOAD = b"[DONE]"
KEEPALIVE = b": keep-alive\n\n"
MAX_EVENT_BYTES = 8 * 1024 * 1024


class SSEError(ValueError):
    """The upstream sent something that is not an event stream we can relay."""


_PLAIN_START = b"data: {"
_PLAIN_JOIN = b"}\n\ndata: {"
# A run of ordinary Responses delta events: an `event: response.<...>.delta` line, one `data: {"...}`
# line, a blank line. One C-level match per read (measured no slower than plain_events' scans). The
# data's framing is checked as far as bytes can say it without parsing: it opens as an object with
# a member (`{"`) and closes one after the end of a value (a digit, `"`, `]`, `}`, true/false/null's
# `e`/`l`), so `{oops}`, `{"a":}`, `{"a":1,}` and a cut `{"a":"b` go to the parser, which ends the
# stream with upstream_bad_event. What is broken only inside such a frame (`{"a" 1}`) is relayed as
# it came, as chat's plain_events relays it: telling it apart would take a JSON parse per delta.
_PLAIN_DELTAS = re.compile(rb'(?:event: response\.[a-z_.]+\.delta\ndata: \{"[^\n]*[0-9"\]}el]\}\n\n)+')


def plain_events(chunk: bytes):
    """The fast path for a read that holds only ordinary events, checked with a few C-level scans.

    When the read's complete events are each one `data: {...}` line with LF line ends (and maybe a
    final `data: [DONE]`), returns (block, count, done, rest): the bytes of those events as they
    can be relayed, how many, whether [DONE] ended them, and the unfinished tail. Otherwise (CR
    line ends, comments, other fields, multi-line data, a payload that is not an object, and any
    event that may carry an error or usage, which the parsed path must look at) returns None and
    the read goes through SSEParser. The fast path of chat completions (dialects.ChatDialect).
    """
    end = chunk.rfind(b"\n\n")
    if end < 0 or b"\r" in chunk:
        return None
    block = chunk if end + 2 == len(chunk) else chunk[:end + 2]
    done = block.endswith(b"data: [DONE]\n\n")
    if done:
        block = block[:-len(DONE)]
        if not block:
            return block, 0, True, chunk[end + 2:]
    # "usage" first: a stream's last read holds it, and is then refused after one scan, not two.
    if block[:7] != _PLAIN_START or block[-3:] != b"}\n\n" or b'"usage"' in block or b'"error"' in block:
        return None
    # Every event one `data: {...}` line: with the joins between events taken out, no line end is
    # left but the last event's (two C passes, memchr for the second).
    joined = block.replace(_PLAIN_JOIN, b"")
    if joined.find(b"\n", 0, len(joined) - 2) >= 0:
        return None
    return block, (len(block) - len(joined)) // len(_PLAIN_JOIN) + 1, done, chunk[end + 2:]


def plain_deltas(chunk: bytes):
    """The fast path of a Responses stream: like plain_events, for a read whose complete events are
    all `event: response.<...>.delta` + one `data: {...}` line (text, reasoning and argument
    deltas: nearly every event of a stream). Anything else, terminal and error events included,
    returns None and goes through SSEParser. `done` is always False: no delta ends a stream.
    """
    end = chunk.rfind(b"\n\n")
    if end < 0 or b"\r" in chunk:
        return None
    block = chunk if end + 2 == len(chunk) else chunk[:end + 2]
    if _PLAIN_DELTAS.fullmatch(block) is None or b'"error"' in block:
        return None
    return block, block.count(b"\n\n"), False, chunk[end + 2:]


def data_event(payload: bytes) -> bytes:
    """One `data:` event for a single-line payload."""
    return b"data: " + payload + b"\n\n"


class SSEParser:
    """Feed it bytes as they arrive; it returns the `data` payload of every event completed so far
    (with `typed`, `(event name or None, data)` pairs: Responses streams name their events).

    Comment lines (`:` first) and fields other than `data` (and `event`, when typed) are dropped;
    `comments` counts the former. An event with several `data:` lines yields their values joined by
    `\\n`, as the spec says.
    Linear in what it is fed: an unfinished line and the lines of an unfinished event are kept as
    lists and joined once, when they end, so an upstream that never ends its line or its event
    costs one copy per byte, and SSEError once the event passes `max_event` bytes.
    """

    __slots__ = ("_buf", "_more", "_more_size", "_data", "_size", "_after_cr", "comments", "max_event",
                 "typed", "_name")

    def __init__(self, max_event: int = MAX_EVENT_BYTES, typed: bool = False) -> None:
        self._buf = b""  # the start of a line not ended yet
        self._more = None  # or, once a read brought no line end, all its pieces (joined when it ends)
        self._more_size = 0
        self._data = None  # the current event's data: bytes (one line) or a list (several lines)
        self._size = 0  # the bytes of _data when it is a list
        self._after_cr = False  # the last read ended with CR: an LF starting the next one belongs to it
        self.comments = 0
        self.max_event = max_event
        self.typed = typed
        self._name: bytes | None = None  # the current event's `event:` name (typed only)

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._after_cr:
            if not chunk:
                return []  # an empty read says nothing about the LF that may complete that CR
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
            self._after_cr = False
        if b"\r" in chunk:
            self._after_cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            if not chunk:
                return []  # nothing new (an empty read, or a lone LF that completed a CR)
            if self._more is None:
                self._more = [self._buf, chunk]
                self._more_size = len(self._buf) + len(chunk)
            else:
                self._more.append(chunk)
                self._more_size += len(chunk)
            if self._held(self._more_size) > self.max_event + 6:  # + 6: an unended line still has its "data: "
                raise self._too_large()
            return []
        if self._more is not None:
            head = b"".join(self._more)
            self._more = None
            chunk = head + chunk
            end += len(head)
        elif self._buf:
            end += len(self._buf)
            chunk = self._buf + chunk
        self._buf = chunk[end + 1:]
        events = []
        data = self._data
        size = self._size
        limit = self.max_event
        for line in chunk[:end].split(b"\n"):
            if not line:
                if data is not None:
                    if type(data) is not bytes:
                        data = b"\n".join(data)
                    if len(data) > limit:
                        raise self._too_large()
                    events.append((self._name, data) if self.typed else data)
                    data = None
                self._name = None
            elif line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                if data is None:
                    data = value
                elif type(data) is bytes:  # several lines: kept apart, joined once when the event ends
                    size = len(data) + 1 + len(value)
                    data = [data, value]
                else:
                    size += 1 + len(value)
                    data.append(value)
            elif line[0] == 58:  # ":"
                self.comments += 1
            elif line[:6] == b"event:" and self.typed:
                self._name = line[7:] if line[6:7] == b" " else line[6:]
            # Other fields (id, retry) carry nothing the gateway relays.
        self._data = data
        self._size = size
        # + 6 only for a line not ended yet: its "data: " prefix is not known to be one until it ends.
        if data is not None and self._held(len(self._buf)) > limit + (6 if self._buf else 0):
            raise self._too_large()
        return events

    def _held(self, unfinished_line: int) -> int:
        """Bytes of the current event: its data lines so far and the line not ended yet."""
        data = self._data
        if data is None:
            return unfinished_line
        return (len(data) if type(data) is bytes else self._size) + unfinished_line

    def _too_large(self) -> SSEError:
        return SSEError("the upstream sent an event larger than max_event_size (%d bytes)" % self.max_event)

    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (an upstream cut mid-event)."""
        return bool(self._buf) or self._more is not None or self._data is not None or self._name is not None
