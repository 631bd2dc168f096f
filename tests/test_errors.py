"""The one error model: its two renderings and the upstream mapping table."""

import json

import pytest

from tornado_grok import errors
from tornado_grok.errors import GatewayError


def xai(code, text):
    return json.dumps({"code": code, "error": text}).encode()


# (upstream status, upstream body, upstream headers) -> (client status, message, extra headers)
UPSTREAM_TABLE = [
    (400, xai("bad", "Model not found: x"), {}, 400, "Model not found: x", {}),
    (404, xai("nf", "no such model"), {}, 404, "no such model", {}),
    (422, xai("u", "messages: field required"), {}, 422, "messages: field required", {}),
    (401, xai("a", "Incorrect API key provided: xa***ey"), {}, 502,
     "the upstream rejected the gateway's credentials (HTTP 401)", {"x-should-retry": "false"}),
    (403, xai("a", "forbidden"), {}, 502, "the upstream rejected the gateway's credentials (HTTP 403)",
     {"x-should-retry": "false"}),
    (410, xai("g", "The model grok-beta was retired"), {}, 410, "The model grok-beta was retired", {}),
    (409, xai("c", "conflict"), {}, 409, "conflict", {}),
    (413, xai("t", "too large"), {}, 413, "too large", {}),
    (429, xai("r", "Too many requests"), {"Retry-After": "7"}, 429, "Too many requests", {"Retry-After": "7"}),
    (429, xai("r", "You have run out of credits"), {}, 429, "You have run out of credits",
     {"Retry-After": "1", "x-should-retry": "false"}),
    (500, xai("i", "boom"), {}, 502, "upstream error (HTTP 500): boom", {}),
    (503, b"<html>down</html>", {}, 502, "upstream error (HTTP 503): <html>down</html>", {}),
    (408, b"", {}, 504, "upstream timed out: upstream returned HTTP 408", {}),
    (400, json.dumps({"error": {"message": "openai style"}}).encode(), {}, 400, "openai style", {}),
]


@pytest.mark.parametrize("up_status,body,headers,status,message,extra", UPSTREAM_TABLE)
def test_upstream_mapping(up_status, body, headers, status, message, extra):
    err = errors.from_upstream(up_status, body, headers, ())
    assert (err.status, err.message, err.headers) == (status, message, extra)


CURL_TABLE = [
    (errors.CURLE_COULDNT_CONNECT, 502, "upstream_unreachable"),
    (errors.CURLE_COULDNT_RESOLVE_HOST, 502, "upstream_unreachable"),
    (errors.CURLE_OPERATION_TIMEDOUT, 504, "upstream_timeout"),
    (errors.CURLE_PARTIAL_FILE, 502, "upstream_disconnected"),
    (errors.CURLE_RECV_ERROR, 502, "upstream_disconnected"),
    (errors.CURLE_GOT_NOTHING, 502, "upstream_disconnected"),
    (35, 502, "upstream_transport"),
]


@pytest.mark.parametrize("errno,status,code", CURL_TABLE)
def test_curl_mapping(errno, status, code):
    err = errors.from_curl(errno)
    assert (err.status, err.code) == (status, code)


def test_sse_rendering_is_the_seed_form_exactly():
    err = GatewayError(401, "Invalid authentication token")
    assert err.sse_event() == b'data: {"error":"API error: Invalid authentication token"}\n\n'


def test_openai_form_and_json_body():
    err = GatewayError(429, "slow down", code="rate_limit_exceeded")
    body = {"error": {"message": "API error: slow down", "type": "rate_limit_error",
                      "code": "rate_limit_exceeded"}}
    assert json.loads(err.json_body()) == body
    assert json.loads(err.sse_event(openai_form=True)[6:]) == body


def test_messages_keep_slashes_and_unicode_readable():
    err = GatewayError(404, "no such endpoint: GET /api/v1/x é")
    assert err.sse_event() == 'data: {"error":"API error: no such endpoint: GET /api/v1/x é"}\n\n'.encode()
