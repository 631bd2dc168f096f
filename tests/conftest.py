"""Fixtures shared by the test suite. Every server is a real process on a free loopback port.

Fixtures:
  mock          session: the mock upstream (`python -m mock_upstream --port 0 --speed 0`), from
                tests/mock_helpers.py; `.base` is its /v1 URL, `.grpc` its gRPC 127.0.0.1:PORT,
                `.journal()` what it received (gRPC calls too).
  tmp_root      session: a temporary folder for config and keys files.
  gateway       session: a gateway (`python run.py --port 0 ...`) in front of `mock`, with the
                default settings; `.base` is its /api/v1 URL, `.grpc` its gRPC 127.0.0.1:PORT
                (relayed to `mock`'s), `.stderr` its log so far.
  key           session: a client key of `gateway`, made with `run.py keys add` (the real CLI).
  headers       the request headers of the seed's examples, with `key`.
  make_gateway  function: start_gateway(settings={...}, upstream_url=..., key_name=...) for a gateway
                with settings of its own; returns (gateway, key); stopped after the test. In front
                of `mock` its gRPC relay goes to `mock`'s gRPC services too.
  xai_client / async_xai_client: xai-sdk's Client / AsyncClient pointed at `gateway`'s gRPC port with `key`.
  openai_client / async_openai_client: the official SDK pointed at `gateway` with `key`.
  redis_server  module: a real redis-server on a free loopback port (tests/redis_server.py); modules
                that use it mark themselves with skip_unless_available().
  redis_url     function: that server's URL, its data flushed first.

Helpers (plain modules): tests/needs.py skips with the reason and the install command when a
program (curl, node) is missing; tests/cut_upstream.py is an upstream that sends given bytes in
given cuts (the relay's property tests). Every test has a 120 s limit (pytest.ini) and the order
is random (pytest-randomly): no test may rely on another having run.
"""

import compileall
import os
import py_compile
import sys
import uuid

# Before grpc is imported anywhere in this process: no gRPC fork handlers. The tests use gRPC clients
# (and the in-process mock's gRPC server) in the same process that then starts gateways and mocks
# with subprocess (fork, then exec); grpc's handlers, run in that fork while its threads are busy,
# crashed a child (once in a full run) before it could exec. The child never uses gRPC: it needs none.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest  # noqa: E402

from tests import servers
from tests.mock_helpers import start_mock


def pytest_configure(config):
    """The project's bytecode, compiled once per run. The suite starts some 300 gateway and mock
    processes; where PYTHONDONTWRITEBYTECODE is set (it is on this project's machines) none of them
    keeps what it compiled, so each compiled every module again: about 0.05 s of CPU per start
    (bench/gateway_start.py), some 15 s per run. Written where Python always writes it (the gitignored __pycache__ folders),
    checked against the source's hash, not its mtime, so that an edited module (or a mutant of
    bench/mutation.py, written within the same second at the same size) is never run stale."""
    if hasattr(config, "workerinput") or not sys.dont_write_bytecode:
        return  # an xdist worker (the controller compiled), or Python caches bytecode by itself
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for package in ("tornado_grok", "mock_upstream"):
        compileall.compile_dir(os.path.join(root, package), quiet=1,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


@pytest.fixture(scope="session")
def mock():
    m = start_mock("--speed", "0")
    yield m
    m.stop()


def grpc_settings(mock) -> dict:
    """The gateway settings that point its gRPC relay at `mock`'s gRPC services."""
    return {"grpc_upstream": mock.grpc, "grpc_upstream_tls": False}


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("gw"))


@pytest.fixture(scope="session")
def gateway(mock, tmp_root):
    g = servers.start_gateway(os.path.join(tmp_root, "main"), mock.base, grpc_settings(mock))
    yield g
    g.stop()


@pytest.fixture(scope="session")
def key(gateway, tmp_root):
    return servers.add_key(os.path.join(tmp_root, "main", "keys.json"), "tests")


@pytest.fixture
def headers(key):
    return {"Authorization": "Bearer " + key, "Content-Type": "application/json",
            "Accept": "text/event-stream"}


@pytest.fixture
def make_gateway(mock, tmp_path):
    started = []

    def start(settings=None, upstream_url="mock", key_name="k", key_flags=(), **kwargs):
        folder = os.path.join(str(tmp_path), uuid.uuid4().hex[:8])
        url = mock.base if upstream_url == "mock" else upstream_url
        if upstream_url == "mock":
            settings = dict(grpc_settings(mock), **(settings or {}))
        g = servers.start_gateway(folder, url, settings, **kwargs)
        started.append(g)
        k = servers.add_key(os.path.join(folder, "keys.json"), key_name, *key_flags) if key_name else None
        return g, k

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def openai_client(gateway, key):
    import openai
    return openai.OpenAI(api_key=key, base_url=gateway.base, max_retries=0)


@pytest.fixture
def async_openai_client(gateway, key):
    import openai
    return openai.AsyncOpenAI(api_key=key, base_url=gateway.base, max_retries=0)


@pytest.fixture
def xai_client(gateway, key):
    from xai_sdk import Client
    return Client(api_key=key, api_host=gateway.grpc, use_insecure_channel=True)


@pytest.fixture
def async_xai_client(gateway, key):
    from xai_sdk import AsyncClient
    return AsyncClient(api_key=key, api_host=gateway.grpc, use_insecure_channel=True)


@pytest.fixture(scope="module")
def redis_server():
    from tests.redis_server import RedisServer
    server = RedisServer.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    redis_server.flush()
    return redis_server.url
