"""The rendering of a handler's errors: write_error, the one place an error body is written, in the
form the request asks for (a JSON body, or the seed's SSE event for a stream request); the 405 of a
method a path does not answer; and the content types of the two forms."""

from tornado import web

from ..errors import GatewayError

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class ErrorRendering:
    """BaseHandler's error methods (they use its set_sse_headers, wants_sse and config)."""

    def write_error(self, status_code: int, **kwargs) -> None:
        err = _as_gateway_error(self, status_code, kwargs.get("exc_info"))
        self.gateway_error = err  # for the access log and metrics
        if err.status != status_code:
            self.set_status(err.status)
        self.finish(self.render_error(err))
        raised = (kwargs.get("exc_info") or (None, None))[1]
        if raised is not None:
            # Logged already if it had to be (log_exception). Kept, its traceback's frames hold this
            # handler, which holds the exception: a cycle per refused request for the garbage
            # collector (tornado_grok/gcpolicy.py), which a flood of bad keys would feed.
            raised.__traceback__ = None

    def render_error(self, err: GatewayError) -> bytes:
        """Sets an error's headers and content type before anything was sent; returns its body.

        A stream request's error is the seed's SSE event, except for a client whose Accept is only
        application/json (the OpenAI SDKs, LangChain): they show the text of a JSON error body
        and nothing of an event stream under an error status (README "Errors").
        """
        for name, value in err.headers.items():
            self.set_header(name, value)
        if self.wants_sse and not _json_only(self.request.headers.get("Accept")):
            self.set_sse_headers()
            return err.sse_event(self.config.sse_error_format == "openai")
        self.set_header("Content-Type", JSON_CONTENT_TYPE)
        return err.json_body()

    def allowed_methods(self) -> list:
        """The methods this path answers (the Allow header of a 405)."""
        return [m for m in self.SUPPORTED_METHODS if m != "OPTIONS"
                and getattr(type(self), m.lower()) is not getattr(web.RequestHandler, m.lower(), None)]

    def method_not_allowed(self) -> GatewayError:
        return GatewayError(405, "method %s is not allowed on %s" % (self.request.method, self.request.path),
                            code="method_not_allowed", headers={"Allow": ", ".join(self.allowed_methods())})


def _json_only(accept: str | None) -> bool:
    """Whether an Accept header names application/json and nothing else (parameters aside)."""
    return bool(accept) and "," not in accept and accept.split(";", 1)[0].strip().lower() == "application/json"


def _as_gateway_error(handler, status_code: int, exc_info) -> GatewayError:
    exc = exc_info[1] if exc_info else None
    if isinstance(exc, GatewayError):
        return exc
    if status_code == 405:
        return handler.method_not_allowed()
    if status_code == 404:
        return GatewayError(404, "no such endpoint: %s %s" % (handler.request.method, handler.request.path),
                            code="not_found")
    if isinstance(exc, web.HTTPError) and status_code < 500:
        return GatewayError(status_code, exc.log_message or exc.reason or "bad request", code="bad_request")
    return GatewayError(500, "internal error (request %s)" % handler.request_id, code="internal_error",
                        kind="api_error")
