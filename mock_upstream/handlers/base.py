"""The base of every /v1 handler: journal entry, Bearer auth, JSON body, xAI error bodies."""

import json
import socket

from tornado.ioloop import IOLoop
from tornado.locks import Event
from tornado.web import HTTPError, RequestHandler

from mock_upstream import faults, player
from mock_upstream.journal import mask_secret, public_headers
from mock_upstream.plan import Plan, code_for, error_body
from mock_upstream.scenarios import ScenarioError


class XaiError(HTTPError):
    """An error answered with xAI's body {"code": ..., "error": ...}."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(status, message)
        self.message = message
        self.code = code or code_for(status)
        self.headers = headers or {}


class ApiHandler(RequestHandler):
    """Journals the request, checks the key, renders errors as xAI does, plays plans."""

    def initialize(self, mock):
        self.mock = mock
        self.arrived = IOLoop.current().time()  # recorded delays count from the request
        self.entry = None
        self.outcome = None  # set before finishing when the ending is not "complete"
        self.dropped = False
        self.gone = Event()
        self._drop_timer = None

    @property
    def test_id(self) -> str | None:
        return self.request.headers.get("X-Mock-Test-Id")

    @property
    def speed(self) -> float:
        value = self.request.headers.get("X-Mock-Speed")
        if value is None:
            return self.mock.options.speed
        try:
            speed = float(value)
        except ValueError:
            raise XaiError(400, f"X-Mock-Speed must be a number, not {value!r}") from None
        if speed < 0:
            raise XaiError(400, "X-Mock-Speed must not be negative")
        return speed

    def prepare(self):
        body = self.parsed_body()
        self.entry = self.mock.journal.add(self.request.method, self.request.uri, public_headers(self.request.headers),
                                           body, self.test_id)
        self.check_key()

    def parsed_body(self):
        raw = self.request.body
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def check_key(self) -> None:
        auth = self.request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise XaiError(401, "Missing or invalid Authorization header: expected 'Bearer <API key>'")
        required = self.mock.options.require_key
        if required and key.strip() != required:
            shown = mask_secret(key.strip())
            raise XaiError(401, f"Incorrect API key provided: {shown}. You can obtain an API key from https://console.x.ai.",
                           code=code_for(400))

    def json_body(self) -> dict:
        body = self.entry["body"] if self.entry else self.parsed_body()
        if not isinstance(body, dict):
            raise XaiError(400, "The request body must be a JSON object")
        return body

    def write_error(self, status_code, **kwargs):
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, XaiError):
            for name, value in error.headers.items():
                self.set_header(name, value)
            message, code = error.message, error.code
        else:
            message, code = self._reason, code_for(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(error_body(code, message))

    async def play(self, plan) -> None:
        if self.entry is not None:
            self.entry["status"] = plan.status
        outcome = await player.play(self, plan, self.speed)
        self.end(outcome)

    async def answer_or_fault(self, body: bytes) -> None:
        """A JSON answer for endpoints without scenarios of their own: only error recordings
        (`X-Mock-Scenario: http_429`, ...) and the HTTP-level parts of faults apply."""
        runtime = self.mock.faults.take(self.test_id)
        name = self.request.headers.get("X-Mock-Scenario") or (runtime.scenario if runtime else None)
        plan, own = Plan(200, {}, False, body), None
        if name:
            try:
                scenario = self.mock.registry.get(name.strip())
            except ScenarioError as e:
                raise XaiError(400, str(e)) from None
            self.entry["scenario"] = scenario.name
            if scenario.recording is not None and scenario.recording.status >= 400:
                plan = scenario.recording.plan("", False, False)
            own = scenario.fault
        await self.play(faults.apply(plan, faults.merge(own, runtime)))

    def send_at_once(self, stream=None) -> None:
        """TCP_NODELAY on this response's connection, and note in the journal that it is on.

        Tornado turns Nagle's algorithm back on after every response, so on a reused connection
        an event written right after the headers would wait for the client's delayed ACK (about
        40 ms on Linux) and every recorded delay under that would be replayed late."""
        stream = stream or getattr(self.request.connection, "stream", None)
        if stream is None or stream.closed():
            return
        stream.set_nodelay(True)
        sock = stream.socket
        if self.entry is not None and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            self.entry["tcp_nodelay"] = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def count_event(self) -> None:
        self.entry["events"] += 1

    def end(self, how: str) -> None:
        if self.entry is not None:
            self.mock.journal.end(self.entry, how)
        if self._drop_timer is not None:
            IOLoop.current().remove_timeout(self._drop_timer)
            self._drop_timer = None

    def take_stream(self):
        """Detach the connection for raw HTTP/1.1 writes; client departure still sets `gone`."""
        stream = self.detach()
        stream.set_close_callback(self.gone.set)
        return stream

    def drop(self) -> None:
        """Drop the TCP connection now: no chunked terminator, no [DONE]."""
        if self.dropped or self._finished:
            return
        self.dropped = True
        self.end("fault")
        self.gone.set()
        self.detach().close()

    def drop_detached(self, stream) -> None:
        """drop() for a connection already taken with take_stream()."""
        self.dropped = True
        self.end("fault")
        self.gone.set()
        stream.close()

    def drop_later(self, seconds: float) -> None:
        self._drop_timer = IOLoop.current().call_later(seconds, self.drop)

    def on_connection_close(self):
        self.gone.set()
        self.end(player.CLIENT_CLOSED)

    def on_finish(self):
        if self.entry is not None:
            self.entry["status"] = self.get_status()
        self.end(self.outcome or "complete")
