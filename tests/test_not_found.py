"""An unknown path is a JSON 404 that keeps the connection open for the client's next request, with
or without a small body; a body over 64 KiB (or chunked) is refused unread and the connection closed,
as for every other endpoint that takes no body (app.py)."""

import json

import pytest

from tests import hardening_helpers as hh


def _answer(sock) -> tuple:
    """(status, body) of one Content-Length answer read from `sock`, which must stay open."""
    head, _, got = hh.read_until(sock, b"\r\n\r\n").partition(b"\r\n\r\n")
    assert b"connection: close" not in head.lower()
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(got) < length:
        piece = sock.recv(65536)
        assert piece, "the gateway closed the connection"
        got += piece
    return int(head.split(b" ")[1]), got


@pytest.mark.parametrize("method, body", [("GET", b""), ("POST", b'{"model":"x"}'), ("POST", b"x" * 60000),
                                          ("DELETE", b"")], ids=["get", "post", "post-60k", "delete"])
def test_a_404_keeps_the_connection_for_the_next_request(gateway, key, method, body):
    with hh.connect(gateway) as s:
        for _ in range(3):
            s.sendall(hh.raw_request(method, "/api/v1/no/such/path", hh.auth(key), body))
            status, got = _answer(s)
            assert status == 404
            assert json.loads(got)["error"]["code"] == "not_found"
        s.sendall(hh.raw_request("GET", "/healthz", {}))
        assert _answer(s)[0] == 200


def test_a_big_body_to_an_unknown_path_is_refused_unread(gateway, key):
    with hh.connect(gateway) as s:
        s.sendall(hh.raw_request("POST", "/api/v1/no/such/path", hh.auth(key), b"x" * (1 << 20))[:4096])
        raw = hh.read_all(s)  # the gateway answers and closes without reading the megabyte
    assert raw.startswith(b"HTTP/1.1 404 ")
