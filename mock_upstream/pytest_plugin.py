"""pytest fixtures for testing an app against the mock xAI upstream (registered as a `pytest11` plugin).

Installed with pip, the fixtures are there in every test; nothing to import:

    def test_my_app(grok_mock):
        client = OpenAI(api_key="any", base_url=grok_mock.base_url)
        grok_mock.scenario("reasoning")               # this test's requests get that scenario
        grok_mock.fault(status=429, retry_after=7, times=1)
        ...
        assert grok_mock.journal()[-1]["status"] == 429

Fixtures:
  grok_mock          function: this test's view of the mock (GrokMock below); what it set is undone
                     after the test, and its journal holds only this test's requests.
  grok_mock_server   session: the mock itself (mock_upstream.testing.MockServer), started on a free
                     loopback port in a thread of the test process with its own event loop, and
                     stopped at the end of the session. One per process (pytest-xdist: per worker).
  grok_mock_options  session: the MockOptions given to it; default {"speed": 0} (no delays). Override
                     it in your conftest.py, e.g. to replay at recorded speed or add recordings:
                         @pytest.fixture(scope="session")
                         def grok_mock_options():
                             return {"speed": 1, "recordings_dirs": ["tests/recordings"]}
"""

import pytest


class GrokMock:
    """One test's view of the session's mock: URLs, this test's scenario and fault, its journal.

    The scenario and fault apply to every request that does not choose its own (they are the
    runtime fault of test id "*"), so the app under test needs no special header. Tests of one
    process run one at a time, which is what makes "this test's" well defined.
    """

    def __init__(self, server):
        self.server = server
        self._fault = {}
        self._times = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (the admin API is under /_mock/)."""
        return self.server.url

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT/v1: an OpenAI client's base_url, or your app's upstream URL."""
        return self.server.base_url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def grpc_address(self) -> str:
        """127.0.0.1:PORT of the same mock's gRPC services, for xai-sdk:
        `Client(api_key="any", api_host=grok_mock.grpc_address, use_insecure_channel=True)`."""
        return self.server.grpc_address

    def scenario(self, name: str) -> None:
        """Answer this test's requests with scenario NAME (README "Choosing a scenario")."""
        self._set({"scenario": name}, self._times)

    def fault(self, times: int | None = None, **fields) -> None:
        """Play a fault (README "Faults": status=429, disconnect_after=3, ...) on this test's next
        `times` requests (every request when None); fields add to the scenario and earlier faults."""
        self._set(fields, times)

    def reset(self) -> None:
        """Back to no scenario, no fault, an empty journal."""
        self._fault, self._times = {}, None
        self.server.clear_faults()
        self.server.clear_journal()

    def journal(self) -> list:
        """The requests the mock received during this test, oldest first (secrets masked)."""
        return self.server.journal()

    def wait_ended(self, seq: int | None = None, timeout: float = 5.0) -> dict:
        """Wait until request `seq` (default: the latest) has ended; its journal entry."""
        return self.server.wait_ended(seq, timeout)

    def scenarios(self) -> list:
        return self.server.scenarios()

    def _set(self, fields: dict, times) -> None:
        self._fault = {**self._fault, **fields}
        self._times = times
        self.server.set_fault("*", self._fault, times)


@pytest.fixture(scope="session")
def grok_mock_options() -> dict:
    """MockOptions for grok_mock_server; override in conftest.py (see the module docstring)."""
    return {"speed": 0}


@pytest.fixture(scope="session")
def grok_mock_server(grok_mock_options):
    """The mock upstream for the whole session, on a free loopback port, in its own thread."""
    from mock_upstream.testing import MockServer

    server = MockServer(**grok_mock_options).start()
    yield server
    server.stop()


@pytest.fixture
def grok_mock(grok_mock_server):
    """This test's view of the mock (GrokMock): base_url, scenario(), fault(), journal()."""
    mock = GrokMock(grok_mock_server)
    mock.reset()
    yield mock
    grok_mock_server.clear_faults()
