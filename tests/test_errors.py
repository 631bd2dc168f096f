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


def test_curl_numbers_are_libcurls():
    import pycurl
    assert (errors.CURLE_COULDNT_RESOLVE_HOST, errors.CURLE_COULDNT_CONNECT, errors.CURLE_PARTIAL_FILE,
            errors.CURLE_OPERATION_TIMEDOUT, errors.CURLE_ABORTED_BY_CALLBACK, errors.CURLE_GOT_NOTHING,
            errors.CURLE_RECV_ERROR) == (pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_CONNECT,
                                         pycurl.E_PARTIAL_FILE, pycurl.E_OPERATION_TIMEDOUT,
                                         pycurl.E_ABORTED_BY_CALLBACK, pycurl.E_GOT_NOTHING, pycurl.E_RECV_ERROR)
    err = errors.from_curl(35, "SSL connect error")
    assert err.message == "upstream transport error (curl 35)"


@pytest.mark.parametrize("status,kind", [
    (400, "invalid_request_error"), (401, "authentication_error"), (404, "not_found_error"),
    (405, "invalid_request_error"), (413, "invalid_request_error"), (422, "invalid_request_error"),
    (429, "rate_limit_error"), (502, "upstream_error"), (503, "service_unavailable"), (504, "timeout_error"),
    (403, "permission_error"), (500, "api_error"), (409, "invalid_request_error"), (410, "invalid_request_error"),
    # the edges of the 4xx range that the table does not name
    (431, "invalid_request_error"), (499, "invalid_request_error"), (399, "api_error"),
])
def test_the_type_of_each_status(status, kind):
    err = GatewayError(status, "x")
    assert err.kind == kind and err.status == err.status_code == status
    assert json.loads(err.json_body())["error"]["type"] == kind
    assert GatewayError(status, "x", kind="custom").kind == "custom"


def test_str_repr_and_the_fixed_errors():
    err = GatewayError(418, "teapot", code="tea")
    assert str(err) == "418: teapot" and repr(err) == "GatewayError(418, 'teapot', code='tea')"
    t = errors.timeout("first_event")
    assert (t.status, t.message, t.code) == (504, "upstream first event timeout", "timeout_first_event")
    d = errors.draining()
    assert (d.status, d.code, d.headers) == (503, "draining", {"Retry-After": "1"})
    assert d.message == "the gateway is shutting down; retry on another instance"
    odd = errors.from_upstream(302, b'{"error":"moved"}', None, ())
    assert (odd.status, odd.message, odd.code) == (502, "unexpected upstream response (HTTP 302): moved", "upstream_302")


@pytest.mark.parametrize("body,text", [
    (b'{"code":"c","error":"plain"}', "plain"), (b'{"error":{"message":"object"}}', "object"),
    (b'{"message":"top level"}', "top level"), (b'{"error":{"code":1}}', ""), (b"[1]", ""), (b"", ""),
    (b"  not json  ", "not json"), (b"\xff\xfe", "\ufffd\ufffd"),
])
def test_upstream_text(body, text):
    assert errors.upstream_text(body, ()) == text


@pytest.mark.parametrize("headers,expected", [
    ({"Retry-After": "7"}, "7"), ({"retry-after": "2.9"}, "2"), ({"Retry-After": "-3"}, "0"),
    ({"Retry-After": "soon"}, "1"), ({}, "1"), (None, "1"),
    # Not ASCII digits: the default, never an OverflowError (inf, 1e400) or a digit read from "٣".
    ({"Retry-After": "inf"}, "1"), ({"Retry-After": "1e400"}, "1"), ({"Retry-After": "\u0663"}, "1"),
    ({"Retry-After": "nan"}, "1"), ({"Retry-After": "1" * 30}, "1"), ({"Retry-After": " 12 "}, "12"),
])
def test_retry_after_of_an_upstream_429(headers, expected):
    assert errors.from_upstream(429, b"", headers, ()).headers["Retry-After"] == expected
    assert errors.from_upstream(429, b"", headers, ()).message == "upstream returned HTTP 429"


def test_a_lone_surrogate_is_written_as_an_escape():
    err = GatewayError(400, "bad \ud800 char in /x")
    assert err.json_body() == \
        b'{"error":{"message":"API error: bad \\ud800 char in /x","type":"invalid_request_error","code":null}}'


def test_more_upstream_statuses():
    assert (errors.from_upstream(413, xai("big", "too large"), None, ()).status, errors.from_upstream(413, b"", None, ()).code) == \
        (413, "upstream_413")
    odd = errors.from_upstream(499, b"", None, ())  # a 4xx outside the table keeps its status (410: retired)
    assert (odd.status, odd.message, odd.code) == (499, "upstream returned HTTP 499", "upstream_499")
    five = errors.from_upstream(500, b"", None, ())
    assert five.message == "upstream error (HTTP 500): upstream returned HTTP 500"
    below = errors.from_upstream(399, b"", None, ())  # under 400 is not the client's error: unexpected
    assert (below.status, below.message, below.code) == (502, "unexpected upstream response (HTTP 399): "
                                                               "upstream returned HTTP 399", "upstream_399")


def test_an_upstream_answer_over_max_upstream_body():
    err = errors.upstream_too_large(1234)
    assert (err.status, err.kind, err.code) == (502, "upstream_error", "upstream_too_large")
    assert err.message == "the upstream's answer is larger than max_upstream_body (1234 bytes)"


def test_a_long_non_json_upstream_body_is_cut_at_300_characters():
    body = ("x" * 299 + "é" + "y" * 100).encode()
    assert errors.upstream_text(body, ()) == "x" * 299 + "é"  # 300 characters of the decoded (and scrubbed) text
    assert errors.upstream_text(b"z" * 301, ()) == "z" * 300
