"""The shared CurlAsyncHTTPClient wrapper: one client for the whole process, calls that can be
cancelled (a client went away) and paused (a client reads slowly).

Three departures from the stock client, each for a measured reason (bench/README.md):

- Streamed bodies reach `on_chunk` synchronously from libcurl's write callback, so an upstream
  event is written to the client in the same IOLoop turn it was read, instead of one turn later
  through tornado's `_CurlStreamingBuffer`. `on_chunk` must therefore never call into the multi
  handle (no cancel, no new fetch); it returns WRITE_ABORT to make libcurl end the transfer itself.
  An exception in it is caught, kept on the call and reported after the transfer ends.
- `fetch_impl` drives libcurl at once when the transfer is the only one, so the request is on the
  wire in the turn it was made; under load it leaves that to tornado's next-turn timeout, which
  starts all the turn's new requests with one socket_action (cheaper per request).
- `cancel` removes a transfer through the same `_finish` path a failed one takes (tornado has no
  cancel), so the handle is reset and reused as usual and the upstream connection closes at once.
- `_curl_setup_request` sets the dozen options a gateway call needs instead of tornado's forty
  (handles are reset between requests, so everything else is at libcurl's default), with header
  lines built once per client.

Tornado 6.6's private `_finish`, `_requests`, `_process_queue`, `_handle_timeout`,
`_handle_force_timeout` and `_curl_setup_request` are used on purpose; requirements.txt pins tornado.
"""

import functools
from typing import Callable
from urllib.parse import quote, urlencode

import pycurl
from tornado import httputil
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.concurrent import Future, future_set_result_unless_cancelled
from tornado.httpclient import HTTPResponse

from . import errors
from .validate import PATH_ID

USER_AGENT = "tornado_grok/1.0"


WRITE_ABORT = 0  # what on_chunk returns to end the transfer from inside libcurl
BUFFER_SIZE = 16 * 1024  # libcurl's receive buffer per transfer (its default; the largest read)
UPLOAD_BUFFER_SIZE = 16 * 1024  # the smallest libcurl allows; request bodies go as POSTFIELDS anyway


def join_path(*segments: str) -> str:
    """An upstream path from fixed names and checked ids, each escaped: join_path("models", model_id).

    Ids must have been checked with validate.path_id first (its 400 names the field); what is left
    here is the last guard, and a refusal is a bug of the caller (ValueError, a 500).
    """
    return "/" + "/".join(quote(_segment(s), safe=":") for s in segments)


def _segment(value: str) -> str:
    # The same rule as validate.path_id: no '/', backslash, '%', '?', '#', NUL or space, and no dot
    # segment, so nothing in it can be read by libcurl or the upstream as another path.
    if not isinstance(value, str) or not PATH_ID.fullmatch(value) or ".." in value:
        raise ValueError("refused upstream path segment: not a fixed name or a checked id")
    return value


@functools.lru_cache(maxsize=1024)  # the same few paths on every call; a refusal is not cached
def checked_path(path: str) -> str:
    """`path` if it is '/' followed by '/'-separated segments that each pass _segment, else ValueError.

    UpstreamClient.call joins only such paths to the base URL, so no client input can reach another
    upstream path (a '..', an encoded '/', a query) however a handler builds its path.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("refused upstream path: it must start with '/'")
    for segment in path[1:].split("/"):
        _segment(segment)
    return path


class _Client(CurlAsyncHTTPClient):
    """CurlAsyncHTTPClient plus cancel() and an immediate start."""

    def _curl_setup_request(self, curl, request, buffer, headers) -> None:
        # Every request here is a _Request made by UpstreamClient.call.
        request.gateway_call._setup(curl, buffer, headers)

    after_action = None  # set by UpstreamClient: runs after each socket_action, in the same turn

    def _handle_events(self, fd: int, events: int) -> None:
        super()._handle_events(fd, events)
        self.after_action()

    def _handle_timeout(self) -> None:
        super()._handle_timeout()
        self.after_action()

    def _handle_force_timeout(self) -> None:  # tornado's once-a-second socket_all
        super()._handle_force_timeout()
        self.after_action()

    def fetch_impl(self, request, callback) -> None:
        self._requests.append((request, callback, self.io_loop.time()))
        self._process_queue()
        if len(self._free_list) >= len(self._curls) - 1:
            self._handle_timeout()  # the only transfer: put it on the wire in this turn
        else:
            self._set_timeout(0)  # busy: start all of this turn's requests with one socket_action

    def cancel(self, call: "UpstreamCall") -> None:
        curl = call.curl
        info = getattr(curl, "info", None) if curl is not None else None
        if info is not None and info["request"] is call.request:
            self._finish(curl, errors.CURLE_ABORTED_BY_CALLBACK, "cancelled by the gateway")
            self._process_queue()
            return
        for entry in self._requests:
            if entry[0] is call.request:
                self._requests.remove(entry)
                entry[1](HTTPResponse(entry[0], 599, error=_Cancelled("cancelled while queued")))
                return


class _Request:
    """What tornado's curl client carries for a gateway call (in place of an HTTPRequest, whose
    forty attributes _curl_setup_request above never reads)."""

    __slots__ = ("url", "method", "gateway_call")

    def __init__(self, url: str, method: str):
        self.url = url
        self.method = method
        self.gateway_call = None


class _Cancelled(Exception):
    errno = errors.CURLE_ABORTED_BY_CALLBACK


class UpstreamCall:
    """One upstream request in flight: its curl handle once it has one, and its pause state."""

    __slots__ = ("upstream", "request", "curl", "client", "future", "paused", "cancelled", "status", "body",
                 "on_chunk", "callback_error", "in_callback", "header_lines", "timeout", "raw_headers", "too_large")

    def __init__(self, upstream: "UpstreamClient", request: _Request, body: bytes | None, on_chunk,
                 header_lines: list, timeout: float):
        self.upstream = upstream
        self.client = upstream.http
        self.request = request
        self.body = body
        self.on_chunk = on_chunk
        self.header_lines = header_lines
        self.timeout = timeout
        self.raw_headers = []
        self.curl = None
        self.future = None
        self.paused = False
        self.cancelled = False
        self.status = 0
        self.callback_error = None
        self.in_callback = False
        self.too_large = False  # the whole body was refused for its size (max_body_size)

    def start(self) -> None:
        """Queues the transfer with fetch_impl directly: AsyncHTTPClient.fetch would copy headers
        and wrap the request for defaults that _curl_setup_request does not use."""
        self.future = future = Future()
        self.upstream._track(self)
        self.client.fetch_impl(self.request, functools.partial(future_set_result_unless_cancelled, future))

    def _setup(self, curl, buffer, headers) -> None:
        """Every option this request needs, set on every request (tornado resets reused handles)."""
        self.curl = curl
        setopt = curl.setopt
        setopt(pycurl.URL, self.request.url)
        setopt(pycurl.HTTPHEADER, self.header_lines)
        # The status must be known inside the write callback, where pycurl refuses getinfo(): take
        # it from the status line as libcurl hands it over. Other lines are parsed only if needed.
        setopt(pycurl.HEADERFUNCTION, self._header_line)
        if self.on_chunk is not None:
            setopt(pycurl.WRITEFUNCTION, self._write)
        else:
            # No Accept-Encoding (and no decoding): a body's size in memory is its size on the wire,
            # so max_body_size bounds it, and a compressed bomb is only a body that is not JSON.
            setopt(pycurl.WRITEFUNCTION, functools.partial(self._write_whole, buffer))
        setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        setopt(pycurl.CONNECTTIMEOUT_MS, int(1000 * self.upstream.connect_timeout))
        setopt(pycurl.TIMEOUT_MS, int(1000 * self.timeout))
        setopt(pycurl.USERAGENT, USER_AGENT)
        setopt(pycurl.PROXY, "")  # never a proxy picked up from the environment
        setopt(pycurl.NOSIGNAL, 1)
        setopt(pycurl.BUFFERSIZE, BUFFER_SIZE)
        setopt(pycurl.UPLOAD_BUFFERSIZE, UPLOAD_BUFFER_SIZE)
        if self.request.method == "POST":
            setopt(pycurl.POST, 1)
            setopt(pycurl.POSTFIELDS, self.body or b"")  # sent from memory, no read callbacks
        else:
            setopt(pycurl.HTTPGET, 1)
            if self.request.method != "GET":
                setopt(pycurl.CUSTOMREQUEST, self.request.method)  # DELETE; tornado's reset clears it

    def _header_line(self, line: bytes) -> None:
        if line[:5] == b"HTTP/":
            parts = line.split(None, 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.raw_headers = []
        else:
            self.raw_headers.append(line)
            if self.on_chunk is None and line[:15].lower() == b"content-length:" and self._over_limit(line):
                return 0  # a whole body announced over the limit: refused before it is read

    def headers(self) -> httputil.HTTPHeaders:
        """The upstream's response headers (of its last status line), parsed on demand."""
        headers = httputil.HTTPHeaders()
        for line in self.raw_headers:
            text = line.decode("latin-1").rstrip("\r\n")
            if text:
                try:
                    headers.parse_line(text)
                except httputil.HTTPInputError:
                    pass
        return headers

    def _over_limit(self, line: bytes) -> bool:
        value = line[15:].strip()
        self.too_large = value.isdigit() and int(value) > self.client.max_body_size
        return self.too_large

    def _write_whole(self, buffer, chunk: bytes):
        """libcurl's write callback for a whole (non-streamed) body: refused past max_body_size."""
        if buffer.tell() + len(chunk) > self.client.max_body_size:
            self.too_large = True
            return WRITE_ABORT
        buffer.write(chunk)
        return None

    def _write(self, chunk: bytes):
        """libcurl's write callback: hands the read straight to on_chunk (see the module docstring)."""
        self.in_callback = True
        try:
            return self.on_chunk(chunk)
        except Exception as e:
            self.callback_error = e
            return WRITE_ABORT
        finally:
            self.in_callback = False

    def _done(self, _future) -> None:
        self.upstream.active.discard(self)
        # Nothing calls back into the transfer any more: drop the links back to this call (from its
        # request, from the relay whose write callback it held), so that a request's objects are
        # freed by reference counting when it ends, not left as cycles for the garbage collector.
        self.request.gateway_call = None
        self.on_chunk = None
        response = _future.result() if not _future.cancelled() and _future.exception() is None else None
        error = getattr(response, "error", None)
        if error is not None and getattr(error, "response", None) is response:
            error.response, error.args = None, error.args[:2]  # a 4xx/5xx's HTTPClientError points back

    async def response(self) -> HTTPResponse:
        """The final response; a transport failure is a 599 response with its error, never raised."""
        return await self.future

    def cancel(self) -> None:
        """Ends the transfer now; not from inside on_chunk (return WRITE_ABORT there instead)."""
        if not self.cancelled and not self.in_callback and self.future is not None and not self.future.done():
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
                self.client.after_action()  # PAUSE_CONT may have delivered buffered reads
                self.client._set_timeout(0)


class Target:
    """Where a call goes: an upstream's base URL and the header lines that carry its key."""

    __slots__ = ("base_url", "json_lines", "stream_lines")

    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url.rstrip("/")
        # Expect and Pragma empty: libcurl would add them otherwise (tornado does the same).
        common = [b"Content-Type: application/json", b"Expect:", b"Pragma:"]
        if api_key:
            common.append(b"Authorization: Bearer " + api_key.encode("latin-1"))
        self.json_lines = common + [b"Accept: application/json"]
        self.stream_lines = common + [b"Accept: text/event-stream"]

    def __repr__(self) -> str:
        return "Target(%r)" % self.base_url  # never the key


class UpstreamClient:
    """Sends requests to the upstream API with the gateway's own key; the key never leaves here."""

    def __init__(self, base_url: str, api_key: str, max_clients: int = 10000,
                 connect_timeout: float = 10.0, max_body_size: int = 256 * 1024 * 1024):
        # What errors.upstream_text scrubs from upstream text: an upstream may quote the key it got.
        # (A key of under 8 characters, such as a placeholder for a local mock, is no credential and
        # cannot be scrubbed without mangling ordinary text: every "k" of a log line for the key "k".)
        # Every target's key is in it (target()).
        self.secrets = ()
        self.default = self.target(base_url, api_key)
        self.base_url = self.default.base_url
        self.connect_timeout = connect_timeout
        self.http = _Client(force_instance=True, max_clients=max_clients, max_body_size=max_body_size)
        self.http.after_action = self._send_deferred
        self._deferred: list = []
        self.active: set = set()

    def target(self, base_url: str, api_key: str) -> "Target":
        """Another upstream (its URL and key) that calls of this one client can go to (upstreams.py)."""
        if len(api_key or "") >= 8 and api_key not in self.secrets:
            self.secrets += (api_key,)
        return Target(base_url, api_key)

    def _header_lines(self, streaming: bool, extra: dict | None, target: "Target") -> list:
        lines = list(target.stream_lines if streaming else target.json_lines)
        for name, value in (extra or {}).items():
            line = ("%s: %s" % (name, value)).encode("latin-1", "replace")
            if b"\r" in line or b"\n" in line:
                raise ValueError("line break in upstream header %r" % name)
            lines.append(line)
        return lines

    def call(self, method: str, path: str, body: bytes | None, timeout: float,
             extra_headers: dict | None = None,
             on_chunk: Callable[[bytes], object] | None = None, query: dict | None = None,
             target: "Target | None" = None) -> UpstreamCall:
        """A request ready to go: `call.start()` sends it, `await call.response()` waits for it.

        `path` is a fixed path ("/chat/completions") or one made by join_path; anything else is
        refused with ValueError (checked_path). `query` (names to a value or a list of values,
        checked by the caller) is URL-encoded after it.

        With `on_chunk` the body is streamed: each read reaches on_chunk, inside libcurl, as it
        arrives (possibly before start() returns); `call.status` is the upstream's status by then.
        `target` (from target()) is the upstream it goes to; by default the one of the constructor.
        """
        target = target or self.default
        url = target.base_url + checked_path(path)
        if query:
            url += "?" + urlencode(query, doseq=True)
        request = _Request(url, method)
        lines = self._header_lines(on_chunk is not None, extra_headers, target)
        call = UpstreamCall(self, request, body, on_chunk, lines, timeout)
        request.gateway_call = call  # how _Client._curl_setup_request finds it
        return call

    def start(self, *args, **kwargs) -> UpstreamCall:
        """call(...) and start it."""
        call = self.call(*args, **kwargs)
        call.start()
        return call

    def defer(self, relay) -> None:
        """`relay.send_pending()` once the current socket_action returns."""
        self._deferred.append(relay)

    def _send_deferred(self) -> None:
        if self._deferred:
            relays, self._deferred = self._deferred, []
            for relay in relays:
                relay.send_pending()

    def _track(self, call: UpstreamCall) -> None:
        self.active.add(call)
        call.future.add_done_callback(call._done)

    def close(self) -> None:
        self.http.close()


def curl_errno(response: HTTPResponse) -> int:
    """The libcurl error number of a failed transfer, 0 when it reached the upstream."""
    return getattr(response.error, "errno", 0) if response.code == 599 else 0

