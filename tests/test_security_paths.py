"""No client input chooses an upstream path.

A decoded id put into the upstream URL as it is would let `GET /api/v1/models/..%2f..%2f_mock%2fjournal`
read the mock's admin journal with the gateway's key (against xAI, `..%2fapi-key` would reach
`GET /v1/api-key`). Each attempt below is sent as raw bytes (an
HTTP client would normalise some of them) to a gateway in front of an upstream that records every
request line it receives: each gets a 400 (or a 404 when no route matches) and none reaches it.
"""

import subprocess

import pytest

from tests import hardening_helpers as hh
from tests import security_helpers as sh
from tests.mock_helpers import start_mock
from tornado_grok import upstream, validate
from tornado_grok.errors import GatewayError

ATTEMPTS = [
    "..%2f..%2f_mock%2fjournal",   # the probe's exploit against the bundled mock
    "..%2Fapi-key",                # against xAI: GET /v1/api-key with the operator's key
    "..%2ffiles",
    "%2e%2e%2fapi-key",
    "%2E%2E%2Fapi-key",
    "%2e%2e",
    "..",
    ".",
    "%2e",
    "a..b",
    "..%5capi-key",                # backslash
    "%5c%5c127.0.0.1%5capi-key",
    "grok%00",                     # NUL
    "grok%00%2f..%2fapi-key",
    "%252e%252e%252fapi-key",      # double encoding: the id is "%2e%2e%2fapi-key"
    "..%252fapi-key",
    "%25",
    "grok-4.3%0a",                 # a line break ($ would match before it)
    "grok-4.3%0d%0aX-Injected:%201",
    "grok-4.3%3fx=1",              # an encoded query
    "grok-4.3%23frag",             # an encoded fragment
    "grok%20x",
    "grok-4.3%2f",
    "%2fapi-key",
    "%c0%ae%c0%ae%c0%afapi-key",   # overlong UTF-8 dots and slash
    "%ef%bc%8f..%ef%bc%8fapi-key", # fullwidth solidus
    "%e2%80%a4%e2%80%a4",          # one-dot leaders
    "-leading-dash",
    "x" * 129,
    "grok;x=1",
    "grok@x",
    "~root",
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A gateway in front of an upstream that records every request line: (gateway, key, upstream)."""
    up = sh.HostileUpstream()
    gateway, key = hh.start(str(tmp_path_factory.mktemp("paths")), up.base)
    yield gateway, key, up
    gateway.stop()
    up.stop()


def get(gateway, key: str, path: str) -> bytes:
    return sh.exchange(gateway, hh.raw_request("GET", path, hh.auth(key, Connection="close")))


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_an_id_that_is_not_a_plain_name_never_reaches_the_upstream(recorded, attempt):
    gateway, key, up = recorded
    before = len(up.lines)
    response = get(gateway, key, "/api/v1/models/" + attempt)
    assert sh.status_of(response) in (400, 404), response[:300]
    if sh.status_of(response) == 400:
        # Ours, or tornado's own for bytes that are not UTF-8 once decoded (overlong forms).
        assert b'"code":"invalid_id"' in response or b"Invalid unicode in url" in response, response
    assert up.lines[before:] == []
    # The control: a plain id on the same gateway reaches the upstream, escaped as sent.
    response = get(gateway, key, "/api/v1/models/grok-4.3")
    assert sh.status_of(response) == 200
    assert up.lines[before:] == [b"GET /v1/models/grok-4.3 HTTP/1.1"]


def test_an_alias_reaches_the_upstream_as_its_target(recorded):
    gateway, key, up = recorded
    before = len(up.lines)
    response = get(gateway, key, "/api/v1/models/grok-4-1-fast-non-reasoning")
    assert sh.status_of(response) == 200
    assert response.endswith(b'\r\n\r\n{"id":"grok-4-1-fast-non-reasoning","object":"model","created":1,'
                             b'"owned_by":"hostile"}')
    assert up.lines[before:] == [b"GET /v1/models/grok-4.20-non-reasoning HTTP/1.1"]


def test_curl_with_path_as_is_gets_400(recorded):
    gateway, key, up = recorded
    before = len(up.lines)
    for attempt in ("..%2f..%2f_mock%2fjournal", "%2e%2e%2fapi-key", "%252e%252e%252fapi-key"):
        out = subprocess.run(
            ["curl", "-s", "--path-as-is", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}",
             "-H", "Authorization: Bearer " + key, gateway.base + "/models/" + attempt],
            capture_output=True, text=True, timeout=30)
        assert out.stdout == "400", (attempt, out.stdout, out.stderr)
    assert up.lines[before:] == []


def test_the_mock_journal_exploit_is_closed(tmp_path):
    """The probe's own request, against the bundled mock: no 200, no journal, nothing in its journal."""
    with start_mock("--speed", "0") as mock:
        gateway, key = hh.start(str(tmp_path), mock.base)
        try:
            for attempt in ATTEMPTS:
                response = get(gateway, key, "/api/v1/models/" + attempt)
                assert sh.status_of(response) in (400, 404), (attempt, response[:300])
                assert b"entries" not in response
            assert mock.journal() == []
            assert sh.status_of(get(gateway, key, "/api/v1/models/grok-4.3")) == 200
            assert [e["path"] for e in mock.journal()] == ["/v1/models/grok-4.3"]
        finally:
            gateway.stop()


@pytest.mark.parametrize("value", ["grok-4.3", "grok-4.20-non-reasoning", "ft:grok:org:abc_1", "a", "x" * 128])
def test_path_id_accepts_plain_ids(value):
    assert validate.path_id(value, "field 'id'") == value
    assert upstream.join_path("models", value) == "/models/" + value


@pytest.mark.parametrize("value", ["", "..", ".", "a..b", "a/b", "a\\b", "a%2fb", "a\x00", "a\n", "é", "-a",
                                   "_a", "a b", "a?b", "a#b", "x" * 129, None, 5])
def test_path_id_refuses_everything_else_naming_the_field(value):
    with pytest.raises(GatewayError) as e:
        validate.path_id(value, "field 'file_id'")
    assert (e.value.status, e.value.code) == (400, "invalid_id")
    assert e.value.message.startswith("field 'file_id' must be")
    with pytest.raises(ValueError):
        upstream.join_path("files", value)


@pytest.mark.parametrize("path", ["/models/../api-key", "/models/..", "/models/a%2fb", "/models?x=1", "models",
                                  "/models//x", "/models/a b", "//evil.example/x", "/models/\\x"])
def test_the_upstream_client_joins_only_checked_paths(path):
    with pytest.raises(ValueError):
        upstream.checked_path(path)
