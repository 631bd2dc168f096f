"""Resumable streams: starting one (`X-Resumable: true` on a streamed request), and
GET /api/v1/streams/{id} (resume: the events after Last-Event-ID, then live) and DELETE (cancel).

The resume URL carries a per-stream capability token (`?token=`), so that a browser's
`new EventSource(resumeUrl)` resumes without headers (it sends its own Last-Event-ID); without a
token, the key that started the stream must be sent. A resume is not a new request: it takes nothing
from the request rate limit and no concurrency slot (the stream already holds one while its upstream
runs); resumes and retrievals from the store have a budget of their own (resume_budget).
"""

import functools

from .. import validate
from ..errors import GatewayError
from ..ratelimit import Limits
from ..relay import StreamRelay
from ..resumable_readers import StreamReader
from ..resumable_relay import ResumableRelay, dialect_name
from ..stored_stream import not_resumable
from .backend_calls import backend_call, release_slot
from .base import BaseHandler

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def wants_resumable(handler) -> bool:
    """Whether this streamed request asked for a resumable stream (else its key's default, else
    resumable_default)."""
    value = handler.request.headers.get("X-Resumable")
    if value is None:
        own = handler.key.resumable
        return handler.config.resumable_default if own is None else own
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise GatewayError(400, "header X-Resumable must be true or false", code="invalid_header")


async def start(handler, dialect, asked: str, sent: str, body: bytes | None, *run_args) -> None:
    """Starts the relay of a resumable stream on its own and reads it as its first reader."""
    gateway = handler.gateway
    over = await gateway.stream_store.admit(handler.key.digest)
    if over is not None:
        # Past a budget of stored stream bytes (streambudget.py): a plain stream, and the client is told.
        handler.set_header("X-Resumable", "false")
        handler.set_header("X-Resumable-Reason", over)
        handler.log_fields["not_resumable"] = over
        handler.relay = relay = StreamRelay(handler, gateway, asked, sent, dialect)
        await relay.run(body, handler.forward_headers(), *run_args)
        return
    entry, token = await gateway.stream_store.create(handler.key.digest, dialect_name(dialect))
    handler.set_header("X-Stream-Id", entry.id)
    handler.set_header("X-Resume-Url", "/api/v1/streams/%s?token=%s" % (entry.id, token))
    handler.log_fields["stream_id"] = entry.id
    release = functools.partial(release_slot, gateway, handler.hand_over_slot())
    handler.relay = relay = ResumableRelay(handler, gateway, asked, sent, dialect, entry, release)
    handler.reader = reader = StreamReader(handler, entry, 0, resumed=False)
    gateway.stream_store.run(relay, relay.run(body, handler.forward_headers(), *run_args))
    await reader.run()


async def serve_response(handler, response_id: str, after: int) -> bool:
    """GET /responses/{id}?stream=true&starting_after=N from the stream store, when this response
    was streamed through the gateway as a resumable stream that the same key started: its events
    whose sequence_number is over N (all: after = -1), then live, without `id:` lines. False (the
    caller relays it upstream, as any other response) when the store does not have it for this key:
    unknown, expired, another key's, over its cap, or failed before its first event. As a resume,
    it takes nothing from the rate or concurrency limits, only from the key's resume_budget."""
    key = handler.request.client_key
    entry = await handler.gateway.stream_store.find_response(response_id)
    if entry is None or not entry.allows(key.digest, None) or not entry.resumable or entry.error is not None:
        return False
    await resume_budget(handler, key.digest)
    handler.key = key
    handler.log_fields["stream_id"] = entry.id
    handler.reader = reader = entry.sequence_reader(handler, after)
    with handler.gateway.stream_store.reader_slots.hold(entry.key_digest, entry.id):
        await reader.run()
    return True


async def resume_budget(handler, key_digest: str) -> None:
    """Takes one resume or retrieval from the key's own bucket, resume_requests_per_minute (by
    default ten times the key's requests_per_minute; none when that is unlimited): a 429 with
    Retry-After past it. Separate from the request limit, in the same limiter backend."""
    gateway = handler.gateway
    rpm = gateway.config.resume_requests_per_minute
    if not rpm:
        key = gateway.keys.by_digest(key_digest)
        rpm = 10 * (gateway.limits_for(key) if key is not None else gateway.default_limits).requests_per_minute
    if not rpm:
        return
    decision = await gateway.limiter.acquire("resume:" + key_digest, Limits(requests_per_minute=rpm))
    if decision.lease is not None:
        backend_call(gateway.limiter, "release", decision)  # no concurrency limit: nothing held
    if not decision.allowed:
        if gateway.metrics is not None:
            gateway.metrics.rate_limited("resumes")
        raise GatewayError(429, "resume and retrieval limit reached for this key (%d per minute); retry in %d s"
                           % (rpm, decision.retry_after), code="rate_limit_exceeded",
                           headers={"Retry-After": str(decision.retry_after)})


class StreamHandler(BaseHandler):
    """GET (resume) and DELETE (cancel) one resumable stream; the key that started it, or its token."""

    def prepare(self) -> None:
        self.log_fields = {}

    async def find(self, stream_id: str):
        """The stream, if this client may see it; 404 otherwise (never saying which)."""
        token = self.get_query_argument("token", None)
        key_digest = None
        if not token:
            key = self.gateway.keys.authenticate(self.request.headers.get("Authorization"))
            key_digest = key.digest
            self.log_fields["key"] = key.name
        entry = await self.gateway.stream_store.find(stream_id)
        if entry is None or not entry.allows(key_digest, token):
            raise GatewayError(404, "no such stream: it never existed, is not yours, or expired after "
                                    "resume_retention", code="stream_not_found")
        return entry

    async def get(self, stream_id: str) -> None:
        # Errors are JSON, unless the client asked only for an event stream (as EventSource does).
        self.wants_sse = "text/event-stream" in (self.request.headers.get("Accept") or "")
        last_id = self.last_event_id()
        entry = await self.find(stream_id)
        if entry.ended and entry.error is not None:
            raise entry.error  # it failed before its first event: the same answer as its first request
        if not entry.resumable:
            raise not_resumable("the stream is no longer resumable: it went over its cap (resume_max_bytes or "
                                "resume_max_events)")
        if last_id > entry.count:
            raise GatewayError(400, "Last-Event-ID %d is after the stream's last event (%d)" % (last_id, entry.count),
                               code="invalid_last_event_id")
        await resume_budget(self, entry.key_digest)
        self.reader = reader = entry.reader(self, last_id)
        with self.gateway.stream_store.reader_slots.hold(entry.key_digest, entry.id):
            await reader.run()

    async def delete(self, stream_id: str) -> None:
        entry = await self.find(stream_id)
        running = await self.gateway.stream_store.cancel(entry)
        self.write_json({"id": stream_id, "object": "stream", "cancelled": running})

    def last_event_id(self) -> int:
        value = self.request.headers.get("Last-Event-ID")
        name = "header Last-Event-ID"
        if not value:
            value = self.get_query_argument("last_event_id", "") or "0"
            name = "query parameter 'last_event_id'"
        return validate.ascii_int(value.strip(), name, 12, "invalid_last_event_id")

    def on_connection_close(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()


default_handlers = [
    (r"/api/v1/streams/(?P<stream_id>[A-Za-z0-9_-]{1,64})", StreamHandler),
]
