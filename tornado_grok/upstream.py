"""The shared CurlAsyncHTTPClient wrapper: one client for the whole process, calls that can be
cancelled (a client went away) and paused (a client reads slowly).

Tornado's curl client has no cancel; `_Client.cancel` removes the transfer from the multi handle
through the same `_finish` path a failed transfer takes, so the handle is reset and reused as usual
and the upstream connection is closed at once (the mock sees it within milliseconds).
"""

from typing import Callable

import pycurl
from tornado import httputil
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import HTTPRequest, HTTPResponse

from . import errors

USER_AGENT = "tornado_grok/1.0"


class _Client(CurlAsyncHTTPClient):
    """CurlAsyncHTTPClient plus cancel(): tornado 6.6's private _finish/_requests are used on purpose."""

    def cancel(self, call: "UpstreamCall") -> None:
        curl = call.curl
        info = getattr(curl, "info", None) if curl is not None else None
        if info is not None and _unwrap(info["request"]) is call.request:
            self._finish(curl, errors.CURLE_ABORTED_BY_CALLBACK, "cancelled by the gateway")
            self._process_queue()
            return
        for entry in self._requests:
            if _unwrap(entry[0]) is call.request:
                self._requests.remove(entry)
                entry[1](HTTPResponse(entry[0], 599, error=_Cancelled("cancelled while queued")))
                return


def _unwrap(request):
    """fetch() wraps each HTTPRequest in a _RequestProxy that holds the original as .request."""
    return getattr(request, "request", request)


class _Cancelled(Exception):
    errno = errors.CURLE_ABORTED_BY_CALLBACK


class UpstreamCall:
    """One upstream request in flight: its curl handle once it has one, and its pause state."""

    __slots__ = ("request", "curl", "client", "future", "paused", "cancelled", "status", "headers")

    def __init__(self, client: _Client, request: HTTPRequest):
        self.client = client
        self.request = request
        self.curl = None
        self.future = None
        self.paused = False
        self.cancelled = False
        self.status = 0
        self.headers = httputil.HTTPHeaders()

    def _prepare(self, curl) -> None:
        self.curl = curl

    async def response(self) -> HTTPResponse:
        """The final response; a transport failure comes back as a 599 response, never raised."""
        try:
            return await self.future
        except Exception as e:  # tornado raises transport errors even with raise_error=False
            return HTTPResponse(self.request, 599, error=e)

    def response_code(self) -> int:
        """The upstream's HTTP status as libcurl knows it now (0 before the status line)."""
        # Safe from a streaming callback: tornado resets a handle only after its final flush.
        if not self.status and self.curl is not None:
            try:
                return self.curl.getinfo(pycurl.RESPONSE_CODE)
            except pycurl.error:
                return 0
        return self.status

    def cancel(self) -> None:
        if not self.cancelled and self.future is not None and not self.future.done():
            self.cancelled = True
            self.client.cancel(self)

    def pause(self) -> None:
        """Stops reading from the upstream socket (backpressure from a slow client)."""
        if not self.paused and getattr(self.curl, "info", None) is not None:
            self.paused = True
            self.curl.pause(pycurl.PAUSE_RECV)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if getattr(self.curl, "info", None) is not None:
                try:
                    self.curl.pause(pycurl.PAUSE_CONT)
                except pycurl.error:
                    return  # the transfer failed meanwhile; _finish reports it
                self.client._set_timeout(0)


class UpstreamClient:
    """Sends requests to the upstream API with the gateway's own key; the key never leaves here."""

    def __init__(self, base_url: str, api_key: str, max_clients: int = 10000,
                 connect_timeout: float = 10.0, max_body_size: int = 256 * 1024 * 1024):
        self.base_url = base_url.rstrip("/")
        self._auth = "Bearer " + api_key if api_key else ""
        self.connect_timeout = connect_timeout
        self.http = _Client(force_instance=True, max_clients=max_clients, max_body_size=max_body_size)
        self.active: set = set()

    def _headers(self, extra: dict | None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        if extra:
            headers.update(extra)
        return headers

    def start(self, method: str, path: str, body: bytes | None, timeout: float,
              extra_headers: dict | None = None,
              on_chunk: Callable[[bytes], None] | None = None,
              on_status: Callable[[int], None] | None = None) -> UpstreamCall:
        """Starts a request; `await call.response()` for the HTTPResponse (errors never raise).

        With `on_chunk` the body is streamed: each read reaches on_chunk as it arrives, and on_status
        is called with the status once the upstream's headers are complete, before any chunk.
        """
        headers = self._headers(extra_headers)
        if on_chunk is not None:
            headers["Accept"] = "text/event-stream"
        request = HTTPRequest(
            self.base_url + path, method=method, body=body, headers=headers,
            connect_timeout=self.connect_timeout, request_timeout=timeout,
            streaming_callback=on_chunk, user_agent=USER_AGENT,
            decompress_response=on_chunk is None, allow_nonstandard_methods=True,
        )
        call = UpstreamCall(self.http, request)
        request.prepare_curl_callback = call._prepare
        if on_chunk is not None or on_status is not None:
            request.header_callback = _header_parser(call, on_status)
        call.future = self.http.fetch(request, raise_error=False)
        self.active.add(call)
        call.future.add_done_callback(lambda _f: self.active.discard(call))
        call.future.add_done_callback(_retrieve)
        return call

    def close(self) -> None:
        self.http.close()


def _retrieve(future) -> None:
    """Marks a failed future's exception as seen (response() reports it) so asyncio does not log it."""
    if not future.cancelled():
        future.exception()


def _header_parser(call: UpstreamCall, on_status: Callable[[int], None] | None):
    """Tornado hands header lines one by one; this keeps the status and calls on_status at the end."""

    def on_line(line: str) -> None:
        if line.startswith("HTTP/"):
            try:
                call.status = httputil.parse_response_start_line(line.rstrip()).code
            except httputil.HTTPInputError:
                call.status = 0
            call.headers = httputil.HTTPHeaders()
        elif line in ("\r\n", "\n"):
            if on_status is not None and call.status >= 200:
                on_status(call.status)
        else:
            call.headers.parse_line(line.rstrip("\r\n"))

    return on_line


def curl_errno(response: HTTPResponse) -> int:
    """The libcurl error number of a failed transfer, 0 when it reached the upstream."""
    return getattr(response.error, "errno", 0) if response.code == 599 else 0

