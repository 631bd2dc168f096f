"""No log line holds a client's key, even one a character away from it.

Redacting only an exact copy of the request's own key would log a model name equal to the key
minus one character whole. Every value a client chooses (model name, path, its own request id, an
error text quoting them) is capped and masked: a gateway in front of
the mock gets requests carrying near-copies of two clients' keys in every such place, and its whole
output holds no piece of 12 or more characters of either key, while ordinary names stay readable.
"""

import json

import pytest

from tests import hardening_helpers as hh
from tests import security_helpers as sh
from tests import servers
from tests.mock_helpers import start_mock
from tests.wire import chat_body

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
UUID = "550e8400-e29b-41d4-a716-446655440000"


def near_copies(key: str) -> list[str]:
    """What a client may paste by mistake where a model name or an id goes."""
    middle = len(key) // 2
    changed = key[:middle] + ("A" if key[middle] != "A" else "B") + key[middle + 1:]
    return [key, key[:-1], key[1:], changed, "Bearer " + key, key + " ", key[:middle] + "." + key[middle:],
            key[:20], key[-16:], key.replace("_", "-"), key + key]


def send(gateway, method: str, path: str, key: str, body=None, **headers) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    return sh.exchange(gateway, hh.raw_request(method, path, hh.auth(key, Connection="close", **headers), payload))


@pytest.fixture(scope="module")
def own_mock():
    """A mock of this module's own: its hundreds of requests stay out of the session mock's journal."""
    m = start_mock("--speed", "0")
    yield m
    m.stop()


@pytest.fixture(scope="module")
def logged(own_mock, tmp_path_factory):
    """A gateway with two client keys after every request below: (gateway, key, other_key)."""
    gateway, key = hh.start(str(tmp_path_factory.mktemp("logmask")), own_mock.base)
    try:
        keys_file = gateway.argv[gateway.argv.index("--keys-file") + 1]
        other = servers.add_key(keys_file, "other")
        sent = 0
        for secret in (key, other):
            for value in near_copies(secret):
                for stream in (False, True):
                    send(gateway, "POST", "/api/v1/chat/completions", key, chat_body(model=value, stream=stream))
                send(gateway, "POST", "/api/v1/vision/analyze", key, {"image_url": PNG, "prompt": "?", "model": value})
                send(gateway, "POST", "/api/v1/images/generate", key, {"prompt": "a cat", "model": value})
                send(gateway, "GET", "/api/v1/models/" + value.replace(" ", "%20"), key)
                send(gateway, "GET", "/api/v1/" + value.replace(" ", "%20"), key)
                send(gateway, "POST", "/api/v1/chat/completions", key, chat_body(stream=False),
                     **{"X-Request-Id": value.strip()})
                send(gateway, "GET", "/api/v1/models", value)  # as the key itself: a 401
                sent += 8
        for rid in (UUID, "plain-id"):
            send(gateway, "POST", "/api/v1/chat/completions", key, chat_body(stream=False), **{"X-Request-Id": rid})
            sent += 1
        servers.wait_until(lambda: len(hh.access_lines(gateway)) >= sent, timeout=15)
        yield gateway, key, other
    finally:
        gateway.stop()


def test_no_piece_of_a_client_key_is_logged(logged):
    gateway, key, other = logged
    output = gateway.stdout + gateway.stderr
    lines = hh.access_lines(gateway)
    assert len(lines) > 150
    for secret in (key, other):
        for piece in sh.pieces(secret):
            assert piece not in output, "a piece of a client key (%r) is in the log:\n%s" % (
                piece, "\n".join(line for line in gateway.stderr_lines if piece in line)[:3000])


def test_ordinary_values_stay_readable(logged):
    gateway, key, other = logged
    lines = hh.access_lines(gateway)
    assert hh.access_line(gateway, UUID)["request_id"] == UUID
    assert hh.access_line(gateway, "plain-id")["model"] == "grok-4-1-fast-non-reasoning"
    models = {line.get("model") for line in lines}
    assert "grok-4-1-fast-non-reasoning" in models
    # A near-copy of a key shows as its first four characters and an ellipsis.
    assert key[:4] + "…" in models and other[:4] + "…" in models
    paths = {line["path"] for line in lines}
    assert "/api/v1/chat/completions" in paths and "/api/v1/models/" + key[:4] + "…" in paths


def test_tornados_own_messages_do_not_log_a_key(own_mock, tmp_path):
    """A header value tornado refuses is quoted in its "Malformed HTTP message" line: masked too."""
    gateway, key = hh.start(str(tmp_path), own_mock.base)
    try:
        for value in (key, key[:-1]):
            request = ("GET /api/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\x01\r\n"
                       "Connection: close\r\n\r\n" % value).encode()
            assert sh.status_of(sh.exchange(gateway, request)) == 400
        malformed = servers.wait_until(
            lambda: [line for line in gateway.stderr_lines if "Invalid header value" in line][1:], timeout=10)
        assert "Bearer tg-" in malformed[0]  # the line is there, and says what was wrong
        for piece in sh.pieces(key):
            assert piece not in gateway.stderr, gateway.stderr
    finally:
        gateway.stop()
