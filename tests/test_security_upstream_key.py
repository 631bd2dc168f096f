"""The upstream key never reaches a client or the log, whatever the upstream quotes.

A hostile upstream written for the test (tests/security_helpers.py) quotes the Authorization header
it received (whole, as `Bearer <key>`, a character short, a character changed, JSON-escaped) in
every place it can: the error body of each status (xAI's, OpenAI's and a bare `message` form, and
HTML), a 3xx body and its Location, an SSE error event after a first good event (three forms), and
its response headers. Every response is read as raw bytes; neither those bytes nor any line of the
gateway's output may hold a piece of 12 or more characters of the key.
"""

import json
import secrets

import pytest

from tests import hardening_helpers as hh
from tests import security_helpers as sh
from tests import servers

UPSTREAM_KEY = "xai-" + secrets.token_urlsafe(36)


CASES = [("status-%d-%s" % (status, form), stream)
         for status in sh.ERROR_STATUSES for form in ("xai", "openai", "message", "text")
         for stream in (False, True)] + \
        [("midstream-%s" % form, True) for form in ("xai", "openai", "message")]
LOOKUPS = ["status-%d-%s" % (status, form) for status in sh.ERROR_STATUSES for form in ("xai", "openai", "text")]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Every request of this module, made once (the tests may run in any order), and its answer:
    (gateway, {(model, stream): chat response}, {model: GET /models/{model} response}, upstream)."""
    up = sh.HostileUpstream()
    gateway, key = hh.start(str(tmp_path_factory.mktemp("upkey")), up.base, upstream_key=UPSTREAM_KEY)
    try:
        chats = {(model, stream): chat(gateway, key, model, stream) for model, stream in CASES}
        lookups = {model: sh.exchange(gateway, hh.raw_request("GET", "/api/v1/models/" + model,
                                                              hh.auth(key, Connection="close")))
                   for model in LOOKUPS}
        assert set(up.authorizations) == {"Bearer " + UPSTREAM_KEY}  # the upstream did get the key to quote
        assert len(up.lines) == len(CASES) + len(LOOKUPS)
        servers.wait_until(lambda: len(hh.access_lines(gateway)) == len(CASES) + len(LOOKUPS))
        yield gateway, chats, lookups, up
    finally:
        gateway.stop()
        up.stop()


def chat(gateway, key: str, model: str, stream: bool) -> bytes:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    return sh.exchange(gateway, hh.raw_request("POST", "/api/v1/chat/completions",
                                               hh.auth(key, Connection="close"), body.encode()))


def assert_no_key(data, where: str) -> None:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    for piece in sh.pieces(UPSTREAM_KEY):
        assert piece not in text, "a piece of the upstream key (%r) is in %s:\n%s" % (piece, where, text[-2000:])


@pytest.mark.parametrize("model,stream", CASES)
def test_no_response_byte_holds_the_upstream_key(hostile, model, stream):
    gateway, chats, lookups, up = hostile
    response = chats[model, stream]
    assert_no_key(response, "the response to %s (stream=%s)" % (model, stream))
    status = sh.status_of(response)
    if model.startswith("midstream"):
        assert status == 200
        assert b'"content": "hello"' in response  # the good event came first, then the error event
        assert b'data: {"error":"API error: ' in response
        assert b"Incorrect API key provided: [redacted]" in response
    elif model.startswith(("status-401", "status-403")):
        assert status == 502 and b"the upstream rejected the gateway's credentials" in response
    else:
        assert status >= 400
        # The text is still relayed, with the key taken out of every quote of it.
        assert b"Incorrect API key provided: [redacted]" in response, response


@pytest.mark.parametrize("model", LOOKUPS)
def test_models_lookup_errors_hold_no_key(hostile, model):
    gateway, chats, lookups, up = hostile
    assert_no_key(lookups[model], "GET /models/" + model)
    assert sh.status_of(lookups[model]) >= 400


def test_no_gateway_output_line_holds_the_upstream_key(hostile):
    gateway, chats, lookups, up = hostile
    logged = hh.access_lines(gateway)
    errors = [line["error"] for line in logged if line.get("code", "").startswith("upstream_5")]
    assert "upstream error (HTTP 500): Incorrect API key provided: [redacted] | " \
           "Incorrect API key provided: Bearer [redacted]" in "\n".join(errors)
    assert_no_key(gateway.stdout + gateway.stderr, "the gateway's output")
