"""Incremental Server-Sent Events parsing and the few byte strings the gateway writes. No Tornado here.

The parser works on bytes and cuts only at line ends, so a UTF-8 character split across two reads
is joined before anyone decodes it; events split across reads, several events in one read, CRLF or
CR line ends and comment lines are all handled (WHATWG "event stream interpretation").
"""

DONE = b"data: [DONE]\n\n"
DONE_PAYLOAD = b"[DONE]"
KEEPALIVE = b": keep-alive\n\n"
MAX_EVENT_BYTES = 8 * 1024 * 1024


class SSEError(ValueError):
    """The upstream sent something that is not an event stream we can relay."""


_PLAIN_START = b"data: {"
_PLAIN_JOIN = b"}\n\ndata: {"


def plain_events(chunk: bytes):
    """The fast path for a read that holds only ordinary events, checked with a few C-level scans.

    When the read's complete events are each one `data: {...}` line with LF line ends (and maybe a
    final `data: [DONE]`), returns (block, count, done, rest): the bytes of those events as they
    can be relayed, how many, whether [DONE] ended them, and the unfinished tail. Otherwise (CR
    line ends, comments, other fields, multi-line data, a payload that is not an object) returns
    None and the read goes through SSEParser.
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
    n = block.count(b"\n\n")
    if (block[:7] != _PLAIN_START or block[-3:] != b"}\n\n" or block.count(b"\n") != 2 * n
            or block.count(_PLAIN_JOIN) != n - 1):
        return None
    return block, n, done, chunk[end + 2:]


def data_event(payload: bytes) -> bytes:
    """One `data:` event for a single-line payload."""
    return b"data: " + payload + b"\n\n"


class SSEParser:
    """Feed it bytes as they arrive; it returns the `data` payload of every event completed so far.

    Comment lines (`:` first) and fields other than `data` are dropped; `comments` counts the former.
    An event with several `data:` lines yields their values joined by `\\n`, as the spec says.
    """

    __slots__ = ("_buf", "_data", "_after_cr", "comments")

    def __init__(self) -> None:
        self._buf = b""
        self._data: bytes | None = None
        self._after_cr = False  # the last read ended with CR: an LF starting the next one belongs to it
        self.comments = 0

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
        if self._buf:
            chunk = self._buf + chunk
        end = chunk.rfind(b"\n")
        if end < 0:
            self._buf = chunk
            if len(chunk) > MAX_EVENT_BYTES:
                raise SSEError("upstream event larger than %d bytes" % MAX_EVENT_BYTES)
            return []
        self._buf = chunk[end + 1:]
        events = []
        data = self._data
        for line in chunk[:end].split(b"\n"):
            if not line:
                if data is not None:
                    events.append(data)
                    data = None
            elif line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                data = value if data is None else data + b"\n" + value
            elif line[0] == 58:  # ":"
                self.comments += 1
            # Other fields (event, id, retry) carry nothing the gateway relays.
        self._data = data
        if data is not None and len(data) > MAX_EVENT_BYTES:
            raise SSEError("upstream event larger than %d bytes" % MAX_EVENT_BYTES)
        return events

    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (an upstream cut mid-event)."""
        return bool(self._buf) or self._data is not None
