"""An upstream error status on a streamed request: the gateway quotes the first 64 KiB of the error
body (docs/operations.md) and no byte more. A body that ends within them is read to its end (and its
connection kept for the next request); one that goes past them is cut there, so a JSON body one byte
too long is quoted as text, not understood.

The upstream is tests/cut_upstream.py, sending the body in 16 KiB pieces.
"""

import json

import pytest

from tests import hardening_helpers as hh
from tests.cut_upstream import ask, gateway_before

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    with gateway_before(str(tmp_path_factory.mktemp("relay-error-body"))) as relay:
        yield relay


def error_body(size: int) -> bytes:
    """xAI's error shape, padded to exactly `size` bytes."""
    head, tail = b'{"code":"bad","error":"the upstream says no","pad":"', b'"}'
    return head + b"p" * (size - len(head) - len(tail)) + tail


def ask_error(relay, body: bytes):
    pieces = [body[i:i + 16384] for i in range(0, len(body), 16384)]
    r = ask(relay, pieces, status=400, content_type="application/json")
    assert r.status_code == 400, r.content[:300]
    event = r.content
    assert event.startswith(b"data: ") and event.endswith(b"\n\n"), event[:300]
    return json.loads(event[len(b"data: "):])["error"]


def test_an_error_body_of_exactly_64_kib_is_understood_and_its_connection_kept(relay):
    upstream, gateway, _ = relay
    assert ask_error(relay, error_body(LIMIT)) == "API error: the upstream says no"
    hh.wait_idle(gateway)  # curl has put the connection back
    assert ask_error(relay, error_body(LIMIT)) == "API error: the upstream says no"
    assert upstream.peers[-1] == upstream.peers[-2]  # read to its end, so curl reused the connection


def test_one_byte_more_is_cut_at_64_kib_and_quoted_as_text(relay):
    body = error_body(LIMIT + 1)
    # Cut at 64 KiB the JSON no longer parses: its first 300 characters are quoted as they are.
    assert ask_error(relay, body) == "API error: " + body[:300].decode()
