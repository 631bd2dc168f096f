"""The relay of a resumable stream (opt-in, `X-Resumable: true`): a ResumableRelay is a StreamRelay
whose sink is a StoredStream, not a client connection (relay.py), so the stream outlives its client's
connection and runs until the upstream ends; the request that started it is just its first reader.
Beside it, what a stream's events name: the response id of a Responses stream's first event
(created_id), and a stream's dialect in the store and its error event made in another process
(dialect_name, error_event).
"""

import re

import ujson

from .errors import GatewayError
from .relay import Outcome, StreamRelay
from .stored_stream import StoredStream


class ResumableRelay(StreamRelay):
    """A StreamRelay whose sink is a StoredStream, not a client: it runs until the upstream ends
    (or is cancelled), whoever is reading."""

    def __init__(self, handler, gateway, model_asked, model_sent, dialect, entry: StoredStream, release):
        super().__init__(handler, gateway, model_asked, model_sent, dialect)
        self.entry = entry
        self.release = release  # frees the request's concurrency slot, once the upstream has ended
        self.watch = dialect.typed  # a Responses stream: its first event names the response id
        entry.relay = self

    def _write(self, out: list) -> None:
        if not out or self.closed:
            return
        data = b"".join(out) if len(out) > 1 else out[0]
        self.bytes_out += len(data)
        self.entry.append(data)
        if self.watch:
            self.watch = False
            response_id = created_id(data)
            if response_id is not None:
                self.gateway.stream_store.remember(response_id, self.entry)
        if self.call is not None and self.call.in_callback:
            # As the plain relay: the readers get the reads of one socket_action at once.
            if not self.pending:
                self.gateway.upstream.defer(self)
                self.pending.append(data)
        else:
            self.entry.publish()

    def send_pending(self) -> None:
        if self.pending:
            self.pending = []
            self.entry.publish()

    def keep_alive(self, now: float) -> None:
        self.last_write = now  # the readers keep their own connections alive (StreamReader.check)

    def _deliver_error(self, err: GatewayError) -> None:
        if self.entry.count == 0:
            self.entry.error = err  # before any event: a reader answers with the error's status
        # Kept as an event too: a reader that was already answered 200 (a resume, a keep-alive) gets it.
        self.entry.append(self.dialect.error_event(err, self))

    def _end(self, err: GatewayError | None = None) -> None:
        if err is not None:
            self.send_pending()
            self._deliver_error(err)
        self.pending = []  # entry.finish() publishes the rest
        self._settle()
        self.entry.finish()
        release, self.release = self.release, None
        if release is not None:
            release()

    def client_gone(self) -> None:
        """A reader's client left: the stream goes on (StoredStream.detach decides)."""

    def cancel(self, err: GatewayError) -> None:
        """DELETE, or nobody came back within resume_window: stop the upstream, end the stream."""
        self.abort(err, Outcome.CLIENT_GONE)


_RESPONSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def event_json(event: bytes):
    """The JSON object of one SSE event (its `data:` lines joined), or None."""
    lines = [line[5:].lstrip(b" ") if line.startswith(b"data:") else None for line in event.split(b"\n")]
    try:
        obj = ujson.loads(b"\n".join(line for line in lines if line is not None))
    except ValueError:
        return None
    return obj if type(obj) is dict else None


def created_id(data: bytes):
    """The response id of a Responses stream's first event, when it is `response.created`."""
    if not data.startswith(b"event: response.created\n"):
        return None
    obj = event_json(data[:data.find(b"\n\n")])
    response = obj.get("response") if obj is not None else None
    response_id = response.get("id") if type(response) is dict else None
    return response_id if type(response_id) is str and _RESPONSE_ID.match(response_id) else None


def dialect_name(dialect) -> str:
    """How a stream's dialect is named in the store (to make its error event in another process)."""
    if dialect.typed:
        return "responses"
    return "chat_openai" if dialect.openai_errors else "chat"


def error_event(dialect: str, err: GatewayError, last_events: bytes) -> bytes:
    """The error event of a stream whose relay is elsewhere (its dialect's form; for the Responses
    API numbered after the last event the reader got)."""
    from .dialects import ResponsesDialect  # here: dialects imports relay, as this module does
    if dialect == "responses":
        class Last:
            last_out = [last_events] if last_events else None
        return ResponsesDialect().error_event(err, Last)
    return err.sse_event(dialect == "chat_openai")
