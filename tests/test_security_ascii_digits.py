"""Integers in headers and query parameters are ASCII digits, read by one parser (validate.ascii_int).

str.isdigit() accepts "²" (a latin-1 byte a header can carry) and "٣", and int() then fails on the
first and reads the second as 3. Every such value is a 400 whose JSON body names the field: never a
dropped connection, a 500, a traceback in the log, or a value passed on to the upstream. Raw
sockets, exact status lines and bodies.
"""

import json
import uuid

import pytest

from tests.wire import bind
from tests import hardening_helpers as hh
from tests.mock_helpers import mock_headers

SUPERSCRIPT_TWO = b"\xb2"  # "²" in latin-1, the encoding HTTP header bytes are read in
ARABIC_THREE = "%D9%A3"  # "٣", percent-encoded UTF-8 in a query string


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    gateway, key = hh.start(str(tmp_path_factory.mktemp("digits")), mock.base)
    yield gateway, key
    gateway.stop()


def exchange(gateway, request: bytes) -> bytes:
    sock = hh.connect(gateway)
    try:
        sock.sendall(request)
        return hh.read_all(sock, timeout=30)
    finally:
        sock.close()


def request(method: str, path: str, headers: list[bytes]) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method.encode(), path.encode()), b"Host: 127.0.0.1", b"Connection: close"]
    return b"\r\n".join(lines + headers) + b"\r\n\r\n"


def error_body(message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": "API error: " + message, "type": "invalid_request_error",
                                 "code": code}}, separators=(",", ":")).encode()


def body_of(raw: bytes) -> bytes:
    head, body, _ = hh.dechunk(raw)
    return body


def assert_no_traceback(gateway) -> None:
    assert "Traceback" not in gateway.stderr, gateway.stderr[-3000:]


LENGTH_ERROR = error_body("header Content-Length must be a whole number written with 1 to 18 ASCII digits (0-9)",
                          "invalid_header")


@pytest.mark.parametrize("method,path", [("GET", "/healthz"), ("GET", "/no/such/path"),
                                         ("POST", "/api/v1/chat/completions")])
@pytest.mark.parametrize("value", [SUPERSCRIPT_TWO, b"1" + SUPERSCRIPT_TWO, b"+5", b"5, 5", b"1" * 19])
def test_a_content_length_that_is_not_ascii_digits_is_a_400_without_a_key(gw, method, path, value):
    gateway, _ = gw
    raw = exchange(gateway, request(method, path, [b"Content-Length: " + value]))
    assert raw == (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(LENGTH_ERROR), LENGTH_ERROR))
    assert_no_traceback(gateway)


def test_an_ascii_content_length_still_works(gw):
    gateway, _ = gw
    raw = exchange(gateway, request("GET", "/healthz", [b"Content-Length: 0"]))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw[:200]


@pytest.mark.parametrize("header,query,name", [
    (b"Last-Event-ID: " + SUPERSCRIPT_TWO, "", "header Last-Event-ID"),
    (b"Last-Event-ID: 1" + SUPERSCRIPT_TWO, "", "header Last-Event-ID"),
    (b"Last-Event-ID: -1", "", "header Last-Event-ID"),
    (None, "?last_event_id=%C2%B2", "query parameter 'last_event_id'"),
    (None, "?last_event_id=" + ARABIC_THREE, "query parameter 'last_event_id'"),
])
def test_a_last_event_id_that_is_not_ascii_digits_is_a_400(gw, header, query, name):
    gateway, key = gw
    headers = [b"Authorization: Bearer " + key.encode()] + ([header] if header else [])
    raw = exchange(gateway, request("GET", "/api/v1/streams/s123" + query, headers))
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw[:300]
    assert body_of(raw) == error_body(
        "%s must be a whole number written with 1 to 12 ASCII digits (0-9)" % name, "invalid_last_event_id")
    assert_no_traceback(gateway)


@pytest.mark.parametrize("stream", ["true", "false"])
@pytest.mark.parametrize("value", ["%C2%B2", ARABIC_THREE, "%EF%BC%93", "-1", "1e3"])
def test_a_starting_after_that_is_not_ascii_digits_is_a_400_and_never_reaches_the_upstream(gw, mock, stream, value):
    gateway, key = gw
    test_id = "digits-" + uuid.uuid4().hex[:8]
    headers = [b"Authorization: Bearer " + key.encode()] + [
        b"%s: %s" % (k.encode(), v.encode()) for k, v in mock_headers(test_id=test_id).items()]
    path = "/api/v1/responses/resp_mock_1?stream=%s&starting_after=%s" % (stream, value)
    raw = exchange(gateway, request("GET", path, headers))
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw[:300]
    assert body_of(raw) == error_body(
        "query parameter 'starting_after' must be a whole number written with 1 to 12 ASCII digits (0-9)",
        "invalid_field")
    assert mock.journal(test_id=test_id) == []
    assert_no_traceback(gateway)


def test_an_ascii_starting_after_reaches_the_upstream_as_sent(gw, mock):
    """The control of the test above: the journal does show a request that was forwarded."""
    gateway, key = gw
    test_id = "digits-" + uuid.uuid4().hex[:8]
    headers = [b"Authorization: Bearer " + key.encode()] + [
        b"%s: %s" % (k.encode(), v.encode()) for k, v in mock_headers(test_id=test_id).items()]
    rid = bind(gateway, key, "response", "resp_mock_1")
    exchange(gateway, request("GET", "/api/v1/responses/%s?starting_after=3" % rid, headers))
    assert [e["path"] for e in mock.journal(test_id=test_id)] == ["/v1/responses/resp_mock_1?starting_after=3"]
