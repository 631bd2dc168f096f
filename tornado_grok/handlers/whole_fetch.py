"""One whole (non-streamed) upstream call over several upstreams: its attempts, the next upstream
after a failure another one may answer differently (APIHandler.fetch_response calls it)."""

from ..upstream import curl_errno
from ..upstreams import classify


async def fetch_whole(handler, method: str, path: str, data: bytes | None, query, model, budget: float):
    """The attempts of one whole (non-streamed) upstream call: the next upstream after a failure that
    another one may answer differently (upstreams.classify), at most upstream_attempts, within
    `budget` seconds in all. Returns the last attempt's response; handler.upstream_call is its call."""
    attempts = handler.gateway.upstreams.attempts(model, getattr(handler, "pinned", None), budget)
    upstream = attempts.first()
    ok = False
    try:
        while True:
            handler.served(upstream)
            call = handler.upstream_call = handler.gateway.upstream.start(
                method, path, data, timeout=attempts.timeout(), extra_headers=handler.forward_headers(),
                query=query, target=upstream.target)
            response = await call.response()
            status = response.code if response.code != 599 else call.status
            kind = classify(status, curl_errno(response), call.cancelled)
            if kind is None:
                ok = response.code < 500
                return response
            upstream = attempts.failed(kind, status, call.headers() if status else None)
            if upstream is None:
                refusal = attempts.refusal()
                if refusal is not None:
                    raise refusal
                return response
            handler.log_fields["failovers"] = attempts.failovers
    finally:
        attempts.done(ok)
