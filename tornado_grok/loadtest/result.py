"""What one load request did: the Result record and the ways a request can end."""
import time

perf = time.perf_counter

# How a request ended. Only "done" is a success.
ENDS = ("done", "error_event", "http_error", "disconnected", "timeout", "connect_error",
        "no_done", "protocol_error", "content_mismatch", "cancelled")


class Result:
    """What one request did, in perf_counter seconds (t_* are absolute)."""

    __slots__ = ("t0", "t_headers", "t_first", "t_prev", "t_end", "status", "chunks", "tokens",
                 "done", "error", "end", "detail", "content_type", "proto", "text", "conv", "turn")

    def __init__(self):
        self.t0 = perf()
        self.t_headers = self.t_first = self.t_prev = self.t_end = 0.0
        self.status = 0
        self.chunks = 0
        self.tokens = None
        self.done = False
        self.error = None
        self.end = None
        self.detail = None
        self.content_type = ""
        self.proto = None  # the first malformed event, if any: the request is a protocol_error
        self.text = None   # a list of content strings when the answer's text is kept (--turns)
        self.conv = self.turn = None
