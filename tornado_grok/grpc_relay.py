"""One relayed gRPC call: key, limits, the upstream call with the operator key, the answer message by
message, accounting, the access-log line and the metrics.

The relay moves bytes. grpcio hands it each request and each upstream message as the serialized
bytes (no deserializer on either side), and sends them on as they are. It parses what it must read:
the request once (model alias, ids), a unary answer once when it carries a model, an id or usage,
and of a server stream only its first message (its id, when ids are bound) and its last (usage).
What it puts back on a stream's messages (the client's model name for an alias, the key-bound id)
is a field appended to the bytes, which a protobuf parser reads as the field's new value, so a chunk
costs one concatenation at most, and nothing when no alias or bound id applies.
"""

import asyncio
import logging
import math
import os
import re
import time

import grpc
import ujson

from . import redact, usage
from .accesslog import access_log
from .errors import GatewayError
from .grpc_methods import ALLOWED, field_number, string_field
from .grpc_upstreams import classify, metadata_headers
from .handlers.backend_calls import backend_call, release_slot
from .redact import REDACTED, loggable

log = logging.getLogger("tornado_grok")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CHARGED_FOR = 48 * 3600  # a finished deferred completion's usage is charged once within this (as REST)
# The gateway's HTTP errors as gRPC statuses (a refusal before the upstream was called).
STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
          413: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
          503: grpc.StatusCode.UNAVAILABLE}


class Refused(Exception):
    """A call answered by the gateway itself with a status, details and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers=(), outcome: str = "rejected", error_code: str = ""):
        super().__init__(details)
        self.code, self.details, self.trailers, self.outcome = code, details, tuple(trailers), outcome
        self.error_code = error_code


def refused(err: GatewayError, outcome: str = "rejected") -> Refused:
    trailers = [(k.lower(), str(v)) for k, v in err.headers.items() if k.lower() in ("retry-after",)]
    return Refused(STATUS.get(err.status, grpc.StatusCode.INTERNAL), err.message, trailers, outcome, err.code or "")


def usage_dict(usage) -> dict | None:
    """A SamplingUsage as the accounting's usage object (chat completions' field names)."""
    if usage is None or not usage.ByteSize():
        return None
    out = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
           "total_tokens": usage.total_tokens}
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def estimate_usage(call: "GrpcCall") -> dict | None:
    """The estimate for a stream that the upstream accepted and that ended without usage (cut by the
    client, a deadline, a drain or an error mid-stream), as usage.py makes it for HTTP: text at
    BYTES_PER_TOKEN bytes a token; the prompt's from the request message, the output's from the
    bytes relayed less each message's envelope, measured once on the last message. None when the
    upstream never had the request."""
    if call.upstream_call is None or (call.last is None and call.outcome not in ("client_gone", "drained", "timeout")):
        return None
    prompt = min(usage.MAX_TOKENS, math.ceil(call.request_size / usage.BYTES_PER_TOKEN))
    output = 0
    if call.last is not None:
        # The first message carries the role and the ids, the others only their text: the envelope
        # of each is measured on the first and on the last (with the suffix each got appended).
        first, last = envelope(call, call.first), envelope(call, call.last)
        text = call.bytes_out - first - last * (call.events - 1)
        output = min(usage.MAX_TOKENS, math.ceil(max(0, text) / usage.BYTES_PER_TOKEN))
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
            "usage_estimated": True}


def envelope(call: "GrpcCall", message: bytes) -> int:
    """The bytes of a relayed stream message that are not its text (content and reasoning)."""
    try:
        decoded = call.method.response.FromString(message)
        text = sum(len(o.delta.content.encode()) + len(o.delta.reasoning_content.encode()) for o in decoded.outputs)
    except Exception:  # a message the generated class cannot read: count it all as text
        text = len(message)
    return max(0, len(message) + call.suffix_size - text)


class GrpcCall:
    """The state of one relayed call, for its relay, its log line and its metrics."""

    __slots__ = ("relay", "method", "path", "context", "started", "request_id", "key", "decision", "model",
                 "asked_model", "events", "bytes_out", "first_event_at", "code", "details", "outcome",
                 "usage", "error_code", "upstream_call", "metadata", "admitted", "last", "finished", "opened",
                 "request_size", "first", "suffix_size", "attempts", "served", "pinned")

    def __init__(self, relay, path: str, context):
        self.relay, self.path, self.context = relay, path, context
        self.method = ALLOWED.get(path)
        self.started = time.monotonic()
        self.metadata = {}
        self.request_size = self.suffix_size = 0
        self.first = None
        for name, value in context.invocation_metadata() or ():
            if isinstance(value, str):
                self.metadata.setdefault(name.lower(), value)
        incoming = self.metadata.get("x-request-id", "")
        self.request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        self.key = self.decision = self.model = self.asked_model = self.usage = self.upstream_call = None
        self.events = self.bytes_out = 0
        self.first_event_at = self.last = None
        self.admitted = self.finished = False
        self.opened = ""  # the upstream's id behind an id the client gave (a deferred request's)
        self.attempts = self.served = self.pinned = None  # the walk over the upstreams, the one serving, an id's
        self.code, self.details, self.outcome, self.error_code = grpc.StatusCode.OK, "", None, ""


class GrpcRelay:
    """The gateway's gRPC side: `handler()` is the grpcio generic handler for every method."""

    def __init__(self, gateway, upstreams):
        self.gateway = gateway
        self.upstreams = upstreams  # grpc_upstreams.GrpcUpstreams: the channels, keys and pool view
        self.open_calls = 0
        self._callables: dict = {}
        self._endpoint_labels = set(ALLOWED)

    # -- grpcio plumbing ---------------------------------------------------------------------------

    def handler(self) -> grpc.GenericRpcHandler:
        relay = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                method = ALLOWED.get(details.method)
                if method is None:  # any cardinality: the key is checked first, then UNIMPLEMENTED
                    return grpc.stream_stream_rpc_method_handler(relay._unknown(details.method))
                if method.stream:
                    return grpc.unary_stream_rpc_method_handler(relay._stream(details.method))
                return grpc.unary_unary_rpc_method_handler(relay._unary(details.method))

        return Handler()

    def upstream(self, upstream, path: str, stream: bool):
        found = self._callables.get((upstream, path))
        if found is None:
            channel = self.upstreams.channels[upstream][0]
            make = channel.unary_stream if stream else channel.unary_unary
            found = self._callables[(upstream, path)] = make(path)  # bytes in, bytes out
        return found

    def begin(self, path: str, context) -> GrpcCall:
        """A new call, finished (accounted, logged) when grpcio says the RPC is over, however it ended:
        a stream whose client left is not resumed, so a `finally` in it would run late or never."""
        call = GrpcCall(self, path, context)
        self.open_calls += 1
        context.add_done_callback(lambda _context: self.finish(call))
        return call

    def _unknown(self, path: str):
        async def unknown(request_iterator, context):
            call = self.begin(path, context)
            try:
                self.authenticate(call)
                raise Refused(grpc.StatusCode.UNIMPLEMENTED, "%s is not relayed by this gateway" % path,
                              error_code="not_found")
            except Refused as r:
                await self.finish_refused(call, r)
            if False:  # a stream-stream handler is an async generator
                yield b""
        return unknown

    def _unary(self, path: str):
        async def unary(request: bytes, context):
            call = self.begin(path, context)
            try:
                return await self.relay_unary(call, request)
            except Refused as r:
                await self.finish_refused(call, r)
        return unary

    def _stream(self, path: str):
        async def stream(request: bytes, context):
            call = self.begin(path, context)
            try:
                async for message in self.relay_stream(call, request):
                    yield message
            except Refused as r:
                await self.finish_refused(call, r)
        return stream

    # -- request -> auth -> limits -> upstream -----------------------------------------------------

    def authenticate(self, call: GrpcCall) -> None:
        try:
            call.key = self.gateway.keys.authenticate(call.metadata.get("authorization"))
        except GatewayError as e:
            raise refused(e) from None

    async def admit(self, call: GrpcCall, request: bytes) -> bytes:
        """Screen, key, limits; returns the request to send upstream (aliases applied, ids opened)."""
        gateway, config = self.gateway, self.gateway.config
        self.authenticate(call)
        if gateway.draining:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down; retry on another instance",
                          outcome="drained", error_code="draining")
        # The connection cap counts open gRPC calls beside HTTP connections (grpcio does not show its
        # connections); the upstream cap counts HTTP transfers, the calls' own upstream calls are in open_calls.
        http_open = gateway.connections.open if gateway.connections is not None else 0
        if self.open_calls + http_open > config.max_connections or \
                self.open_calls + len(gateway.upstream.active) > config.max_upstream:
            if gateway.metrics is not None:
                gateway.metrics.overload("max_connections")
            raise Refused(grpc.StatusCode.UNAVAILABLE, "the gateway is at capacity; retry shortly",
                          error_code="overloaded")
        if len(request) > config.max_body_size:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the request is larger than the limit of %d bytes"
                          % config.max_body_size, error_code="body_too_large")
        request = self.rewrite_request(call, request)
        call.request_size = len(request)
        decision = await gateway.limiter.acquire(call.key.name, gateway.limits_for(call.key))
        if not decision.allowed:
            if gateway.metrics is not None:
                gateway.metrics.rate_limited(decision.reason)
            trailers = [("retry-after", str(decision.retry_after))] + list(decision.headers().items())
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, decision.message(), trailers,
                          error_code="rate_limit_exceeded")
        call.decision = decision
        call.admitted = True
        gateway.request_started()
        await call.context.send_initial_metadata(
            (("x-request-id", call.request_id),) + tuple(decision.headers().items()))
        return request

    def rewrite_request(self, call: GrpcCall, request: bytes) -> bytes:
        """Parses the request once: the model it names (an alias becomes the upstream's name) and the
        ids it gives (another key's id is NOT_FOUND, as an id never issued). Unchanged bytes when
        nothing was rewritten."""
        method = call.method
        if not method.model_field and not method.opens:
            return request
        try:
            message = method.request.FromString(request)
        except Exception:  # protobuf's DecodeError, and what a hostile message may raise beside it
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid %s"
                          % method.request.DESCRIPTOR.name, error_code="invalid_request") from None
        changed = False
        if method.model_field:
            asked = getattr(message, method.model_field)
            call.asked_model = call.model = asked
            upstream = self.gateway.config.aliases.get(asked)
            if upstream:
                setattr(message, method.model_field, upstream)
                call.model, changed = upstream, True
        owner = self.gateway.ownership.owner(call.key.digest)
        for name, kind in method.opens:
            given = getattr(message, name)
            if given:
                try:
                    call.opened, upstream = owner.locate(kind, given, "stored completion" if kind != "deferred"
                                                         else "deferred completion", name)
                except GatewayError as e:
                    raise refused(e) from None
                call.pinned = self.upstreams.pool.whole.by_id_name(upstream)  # the object's own upstream
                setattr(message, name, call.opened)
                changed = True
        return message.SerializeToString() if changed else request

    def upstream_metadata(self, call: GrpcCall) -> list:
        config = self.gateway.config
        key = self.upstreams.channels[call.served][1]
        out = [("authorization", "Bearer " + key), ("x-request-id", call.request_id)]
        if config.forward_mock_headers:
            out += [(k, v) for k, v in call.metadata.items() if k.startswith("x-mock-")]
        return out

    def timeout(self, call: GrpcCall) -> float:
        """The client's deadline, passed on; never more than total_timeout."""
        remaining = call.context.time_remaining()
        total = self.gateway.config.total_timeout
        return total if remaining is None else max(0.001, min(remaining, total))

    def first_attempt(self, call: GrpcCall):
        """The upstream of a call's first attempt (the pool's refusal when none can take it)."""
        if call.pinned is not None and call.pinned not in self.upstreams.channels:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "this id belongs to upstream %r, which has no "
                          "gRPC address (grpc)" % call.pinned.name, error_code="no_grpc_upstream")
        if not self.upstreams.pool.upstreams:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "no upstream of this gateway has a gRPC address "
                          "(grpc)", error_code="no_grpc_upstream")
        call.attempts = self.upstreams.pool.attempts(call.model, call.pinned, self.timeout(call))
        try:
            return call.attempts.first()
        except GatewayError as e:
            raise refused(e) from None

    def next_attempt(self, call: GrpcCall, e: grpc.aio.AioRpcError, own_timeout: bool):
        """After an attempt failed before the client got a message: the next attempt's upstream,
        or the Refused that answers the client (the upstream's status, or the pool's refusal)."""
        kind, status = classify(e.code(), e.details(), own_timeout)
        if kind is None:
            call.attempts.done(e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED))
            return self.upstream_error(e)
        upstream = call.attempts.failed(kind, status, metadata_headers(e) if status else None)
        if upstream is None:
            refusal = call.attempts.refusal()
            return self.upstream_error(e) if refusal is None else refused(refusal, "upstream_error")
        return upstream

    def attempt(self, call: GrpcCall, upstream, request: bytes, stream: bool, timeout: float):
        call.served = upstream
        call.upstream_call = self.upstream(upstream, call.path, stream)(
            request, metadata=self.upstream_metadata(call), timeout=timeout)
        return call.upstream_call

    async def relay_unary(self, call: GrpcCall, request: bytes) -> bytes:
        request = await self.admit(call, request)
        upstream = self.first_attempt(call)
        for _ in range(self.gateway.config.upstream_attempts):
            left = call.attempts.deadline - time.monotonic()
            timeout = call.attempts.timeout()
            try:
                answer = await self.attempt(call, upstream, request, False, timeout)
                break
            except grpc.aio.AioRpcError as e:
                upstream = self.next_attempt(call, e, timeout < left - 0.001)
                if isinstance(upstream, Refused):
                    raise upstream from None
        else:  # not reached: Attempts stops at upstream_attempts
            raise Refused(grpc.StatusCode.UNAVAILABLE, "no upstream answered", outcome="upstream_error")
        call.first_event_at = time.monotonic()
        answer = await self.rewrite_answer(call, answer)
        call.events, call.bytes_out, call.outcome = 1, len(answer), "completed"
        return answer

    async def relay_stream(self, call: GrpcCall, request: bytes):
        request = await self.admit(call, request)
        method = call.method
        first, messages = await self.first_message(call, request)  # finish() cancels the call when the client leaves
        if first is None:  # the upstream ended the stream without a message
            call.outcome = "completed"
            return
        # The first message: what every message gets appended is decided once.
        suffix = self.stream_suffix(call, first)
        call.first_event_at = time.monotonic()
        call.first = call.last = first
        call.suffix_size = len(suffix)
        call.events, call.bytes_out = 1, len(first + suffix)
        yield first + suffix
        try:
            async for message in messages:
                call.last = message
                if suffix:
                    message += suffix
                call.events += 1
                call.bytes_out += len(message)
                yield message
        except grpc.aio.AioRpcError as e:
            raise self.upstream_error(e) from None
        call.outcome = "completed"

    async def first_message(self, call: GrpcCall, request: bytes):
        """The attempts of a stream until one sends its first message (the failover of
        grpc_upstreams.py, a first message overdue by failover_first_event_timeout included);
        returns (that first message, or None for a stream that ended without one; the rest)."""
        limit = self.gateway.config.failover_first_event_timeout
        upstream = self.first_attempt(call)
        attempts = call.attempts
        for _ in range(self.gateway.config.upstream_attempts):
            now = time.monotonic()
            wait = limit if limit > 0 and attempts.can_go_on(now) and \
                attempts.pool.has_next(attempts.model, attempts.tried, now) else None
            messages = self.attempt(call, upstream, request, True, max(0.001, attempts.deadline - now)).__aiter__()
            try:
                first = await asyncio.wait_for(messages.__anext__(), wait)
            except StopAsyncIteration:
                return None, messages
            except asyncio.TimeoutError:
                call.upstream_call.cancel()
                upstream = attempts.failed("first_event_timeout", 0, None)
                if upstream is None:  # not reached: wait is set only when another upstream is there
                    raise Refused(grpc.StatusCode.UNAVAILABLE, "no upstream answered", outcome="upstream_error")
                continue
            except grpc.aio.AioRpcError as e:
                upstream = self.next_attempt(call, e, False)
                if isinstance(upstream, Refused):
                    raise upstream from None
                continue
            return first, messages
        raise Refused(grpc.StatusCode.UNAVAILABLE, "no upstream answered", outcome="upstream_error")

    def stream_suffix(self, call: GrpcCall, first: bytes) -> bytes:
        """The fields put back on each message of a stream: the client's model name, its bound id."""
        method, suffix = call.method, b""
        if call.asked_model and call.model != call.asked_model:
            suffix += string_field(field_number(method.response, "model"), call.asked_model)
        if method.issues:
            name, kind = method.issues[0]
            upstream_id = getattr(method.response.FromString(first), name)
            if upstream_id:
                owner = self.gateway.ownership.owner(call.key.digest)
                owner.upstream = call.served.id_name
                suffix += string_field(field_number(method.response, name), owner.issue(kind, upstream_id))
        return suffix

    async def rewrite_answer(self, call: GrpcCall, answer: bytes) -> bytes:
        """A unary answer, parsed once when it carries what the gateway reads or puts back."""
        method = call.method
        renamed = call.asked_model and call.model != call.asked_model
        aliases = self.gateway.config.aliases if method.model_list else None
        if not (method.issues or method.usage or renamed or aliases):
            return answer
        message = method.response.FromString(answer)
        changed = False
        for model in message.models if aliases else ():  # a client finds the names it may ask for
            extra = [name for name, target in aliases.items() if target == model.name and name not in model.aliases]
            if extra:
                model.aliases.extend(extra)
                changed = True
        if renamed and "model" in method.response.DESCRIPTOR.fields_by_name:
            message.model, changed = call.asked_model, True
        if renamed and "name" in method.response.DESCRIPTOR.fields_by_name:
            message.name, changed = call.asked_model, True
        owner = self.gateway.ownership.owner(call.key.digest)
        owner.upstream = call.served.id_name
        for name, kind in method.issues:
            if getattr(message, name):
                setattr(message, name, owner.issue(kind, getattr(message, name)))
                changed = True
        if method.usage:
            holder = message.response if call.path.endswith("GetDeferredCompletion") else message
            counted = usage.sane(usage_dict(holder.usage))
            if counted is not None and call.path.endswith("GetDeferredCompletion"):
                # Charged once, the first time a finished deferred completion is fetched (as REST).
                if not await self.gateway.accounting.claim("deferred:%s" % call.opened, CHARGED_FOR):
                    counted = None
            call.usage = counted
        return message.SerializeToString() if changed else answer

    def upstream_error(self, e: grpc.aio.AioRpcError) -> Refused:
        """The upstream's status and details as they are, its key scrubbed."""
        details = redact.scrub(e.details() or "", self.gateway.upstream.secrets)
        code = e.code()
        outcome = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else "upstream_error"
        if code == grpc.StatusCode.CANCELLED and self.gateway.draining:
            outcome = "drained"
        return Refused(code, details, outcome=outcome, error_code="upstream_" + code.name.lower())

    async def finish_refused(self, call: GrpcCall, r: Refused) -> None:
        call.code, call.details, call.error_code = r.code, r.details, r.error_code
        call.outcome = r.outcome
        if r.trailers:
            call.context.set_trailing_metadata(r.trailers)
        await call.context.abort(r.code, r.details)

    # -- the end of a call -------------------------------------------------------------------------

    def finish(self, call: GrpcCall) -> None:
        """Accounting, the slot, the log line, the metrics: once per call, however it ended."""
        if call.finished:
            return
        call.finished = True
        self.open_calls -= 1
        if call.upstream_call is not None and not call.upstream_call.done():
            call.upstream_call.cancel()  # the client left, or its deadline passed: stop the upstream now
        if call.attempts is not None:  # its upstream's in-flight count; an answer closes its circuit
            call.attempts.done(call.first_event_at is not None)
        if call.outcome is None:
            call.outcome = "client_gone"
            call.code = grpc.StatusCode.CANCELLED
        method = call.method
        if method is not None and method.stream and method.usage and call.admitted:
            if call.last is not None:  # a stream: its last message's usage, each count made sane
                call.usage = usage.sane(usage_dict(method.response.FromString(call.last).usage))
            if call.usage is None:
                call.usage = estimate_usage(call)
        gateway = self.gateway
        if call.key is not None and call.admitted:
            backend_call(gateway.accounting, "record", call.key.name, call.usage, call.method.stream, call.outcome)
            total = call.usage.get("total_tokens") if call.usage else None
            if isinstance(total, int) and total > 0:
                backend_call(gateway.limiter, "add_tokens", call.key.name, gateway.limits_for(call.key), total)
        decision, call.decision = call.decision, None
        release_slot(gateway, decision)
        self.observe(call)
        if gateway.config.access_log:
            self.log(call)

    def observe(self, call: GrpcCall) -> None:
        metrics = self.gateway.metrics
        if metrics is None:
            return
        endpoint = call.path if call.path in self._endpoint_labels else "grpc:other"
        metrics._child(metrics.requests, endpoint, call.code.name).inc()
        if call.error_code:
            metrics._child(metrics.errors, call.error_code).inc()
            if call.error_code.startswith("upstream"):
                metrics._child(metrics.upstream_errors, call.error_code).inc()
        if call.method is not None and call.method.stream and call.admitted:
            metrics._child(metrics.streams, call.outcome or "unknown").inc()
            if call.first_event_at is not None:
                metrics.ttft.observe(call.first_event_at - call.started)
            metrics.stream_duration.observe(time.monotonic() - call.started)
            if call.bytes_out:
                metrics.bytes_relayed.inc(call.bytes_out)
            if call.events:
                metrics.events_relayed.inc(call.events)

    def log(self, call: GrpcCall) -> None:
        """The access-log line, with the HTTP line's fields (method "GRPC", the gRPC status)."""
        token = (call.metadata.get("authorization") or "").split()
        token = token[-1] if token and len(token[-1]) >= 8 else ""
        secrets = ((token,) if token else ()) + self.gateway.upstream.secrets
        request_id = call.request_id
        if request_id == call.metadata.get("x-request-id"):
            request_id = loggable(request_id, secrets)
        line = {"request_id": request_id, "method": "GRPC",
                "path": call.path if call.method is not None else loggable(call.path, secrets),
                "status": call.code.name, "duration_ms": round(1000 * (time.monotonic() - call.started), 2)}
        if call.key is not None:
            line["key"] = call.key.name
        if call.served is not None:
            line["upstream"] = call.served.name
            if call.attempts.failovers:
                line["failovers"] = call.attempts.failovers
        if call.asked_model:
            line["model"] = loggable(call.asked_model, secrets)
        line["ended"] = call.outcome
        if call.admitted:
            line["usage"] = call.usage
            if call.usage is not None and call.usage.get("usage_estimated"):
                line["usage_estimated"] = True
        if call.method is not None and call.method.stream:
            line["stream"] = True
            line["events"] = line["chunks"] = call.events
            line["bytes"] = call.bytes_out
        if call.first_event_at is not None:
            line["ttft_ms"] = round(1000 * (call.first_event_at - call.started), 2)
        if call.code != grpc.StatusCode.OK:
            line["error"] = loggable(call.details or call.code.name, secrets)
            line["code"] = call.error_code or call.code.name.lower()
        text = ujson.dumps(line, ensure_ascii=False, escape_forward_slashes=False)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        access_log.write(text)

