"""The mock in a thread of the calling process, driven through its admin API: for test suites.

    from mock_upstream.testing import MockServer

    with MockServer(speed=0) as mock:                  # MockOptions fields as keywords
        client = OpenAI(api_key="any", base_url=mock.base_url)
        mock.set_fault("*", {"status": 429, "retry_after": 7}, times=1)
        ...
        assert mock.journal()[-1]["status"] == 429

The server runs on its own asyncio/Tornado event loop in a daemon thread, so it serves while the
test blocks in a synchronous client, and it works beside a test's own event loop. Every call below
goes through the HTTP admin API (`/_mock/...`), never into the mock's objects from another thread.
The pytest fixtures built on it are in pytest_plugin.py.
"""

import asyncio
import json
import threading
import urllib.error
import urllib.parse
import urllib.request

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MockServerError(RuntimeError):
    """The mock did not start, or an admin call failed."""


class MockAdmin:
    """The admin API (`/_mock/...`) of a mock at `self.url`: journal, faults, scenarios. Shared by
    MockServer (a thread) and the test suite's MockProcess (a subprocess, tests/mock_helpers.py)."""

    url: str
    error_class = MockServerError

    def admin(self, method: str, path: str, body=None, timeout: float = 10.0, ok=(200,)):
        """Call /_mock/<path>; returns (status, parsed JSON)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + "/_mock/" + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with _NO_PROXY.open(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        if status not in ok:
            raise self.error_class(f"{method} /_mock/{path} -> {status}: {raw[:500]!r}")
        return status, json.loads(raw) if raw else None

    def journal(self, test_id: str | None = None) -> list:
        """Every request the mock kept (or those sent with `X-Mock-Test-Id: test_id`), oldest first."""
        query = "?" + urllib.parse.urlencode({"test_id": test_id}) if test_id is not None else ""
        return self.admin("GET", "journal" + query)[1]["entries"]

    def clear_journal(self) -> None:
        self.admin("DELETE", "journal")

    def wait_entry(self, seq: int | None = None, timeout: float = 5.0, ended: bool = False,
                   test_id: str | None = None) -> dict:
        """Long-poll until entry `seq` (or the latest) exists (and has ended if `ended`); TimeoutError if not."""
        query = {"timeout": timeout, "ended": int(ended)}
        if seq is not None:
            query["seq"] = seq
        if test_id is not None:
            query["test_id"] = test_id
        status, reply = self.admin("GET", "journal/wait?" + urllib.parse.urlencode(query),
                                   timeout=timeout + 10, ok=(200, 408))
        if status != 200:
            raise TimeoutError(f"mock journal: request {seq or '(latest)'} not {'ended' if ended else 'seen'} "
                               f"within {timeout} s (last state: {reply.get('entry')})")
        return reply["entry"]

    def wait_ended(self, seq: int | None = None, timeout: float = 5.0, test_id: str | None = None) -> dict:
        """Wait until request `seq` (or the latest) has ended; its journal entry. TimeoutError if not."""
        return self.wait_entry(seq, timeout, ended=True, test_id=test_id)

    def set_fault(self, test_id: str, fault: dict, times: int | None = None) -> None:
        """Requests with `X-Mock-Test-Id: test_id` ("*": every request without one) get `fault`."""
        body = {"test_id": test_id, "fault": fault}
        if times is not None:
            body["times"] = times
        self.admin("POST", "faults", body)

    def clear_faults(self, test_id: str | None = None) -> None:
        query = "?" + urllib.parse.urlencode({"test_id": test_id}) if test_id is not None else ""
        self.admin("DELETE", "faults" + query)

    def scenarios(self) -> list:
        return self.admin("GET", "scenarios")[1]["names"]


class MockServer(MockAdmin):
    """`mock_upstream` on a free loopback port, in a thread with its own event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options):
        self.host, self.port, self.options = host, port, options
        self._thread = None
        self._loop = None
        self._stopping = None
        self._ready = threading.Event()
        self._error = None
        self.grpc_port = None

    @property
    def grpc_address(self) -> str:
        """127.0.0.1:PORT of its gRPC services: xai-sdk's `Client(api_host=..., use_insecure_channel=True)`."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (the admin API is under /_mock/)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT/v1, what an OpenAI client's base_url should be."""
        return self.url + "/v1"

    # -- lifetime ----------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> "MockServer":
        self._thread = threading.Thread(target=self._run, name="mock_upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise MockServerError(f"mock_upstream did not start within {timeout} s")
        if self._error is not None:
            raise MockServerError(f"mock_upstream did not start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection (a stalled stream included) and end the thread."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout)

    def __enter__(self) -> "MockServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported to start(); a thread's exception would only be printed
            self._error = e
            self._ready.set()

    async def _serve(self) -> None:
        from mock_upstream.app import start

        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server, self.port = start(self.port, self.host, **self.options)
        from mock_upstream import grpc_service
        grpc_server, self.grpc_port = await grpc_service.start(server.request_callback.settings["mock"], 0, self.host)
        self._ready.set()
        await self._stopping.wait()
        server.stop()
        await grpc_server.stop(1.0)
        await asyncio.wait_for(server.close_all_connections(), 5)
