"""Streaming through the gateway, scenario by scenario, compared byte for byte with the upstream.

A perfect relay passes the mock's bytes on unchanged, except that the aliased model name shows the
name the client asked for and upstream comments are absorbed; failures end with the seed's error
event and never with [DONE].
"""

import pytest

from tests.wire import CLIENT_MODEL, SEED_MODEL, UPSTREAM_MODEL, chat_body, data_events, direct, events, post


def through(gateway, headers, scenario, **extra):
    h = dict(headers, **{"X-Mock-Scenario": scenario})
    return post(gateway.base + "/chat/completions", chat_body(**extra), h)


def upstream_bytes(mock, scenario, **extra):
    body = chat_body(model="grok-4.20-non-reasoning", **extra)
    r = direct(mock, body, {"X-Mock-Scenario": scenario})
    assert r.status_code == 200
    return r.content


@pytest.mark.parametrize("scenario", ["story", "reasoning", "tool_call", "utf8_split", "no_chunked"])
def test_relayed_byte_for_byte(gateway, mock, headers, scenario):
    r = through(gateway, headers, scenario)
    assert r.status_code == 200
    expected = upstream_bytes(mock, scenario).replace(UPSTREAM_MODEL, CLIENT_MODEL)
    assert r.content == expected
    assert r.content.endswith(b"data: [DONE]\n\n")


def test_sse_response_headers(gateway, headers):
    r = through(gateway, headers, "story")
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Accel-Buffering"] == "no"
    assert "Content-Length" not in r.headers
    assert "Content-Encoding" not in r.headers
    assert r.headers["X-Request-Id"]


def test_usage_chunk_only_for_clients_that_ask(gateway, mock, headers):
    asked = through(gateway, headers, "usage", stream_options={"include_usage": True})
    assert asked.content == upstream_bytes(mock, "usage", stream_options={"include_usage": True}) \
        .replace(UPSTREAM_MODEL, CLIENT_MODEL)
    assert b'"choices":[],"usage"' in asked.content or b'"usage"' in data_events(asked.content)[-2]
    # The gateway always asks upstream for usage (for accounting) and keeps the chunk from this client.
    not_asked = through(gateway, headers, "usage")
    upstream = [b + b"\n\n" for b in data_events(upstream_bytes(mock, "usage"))
                if b'"choices":[],"usage"' not in b]
    assert not_asked.content == b"".join(upstream).replace(UPSTREAM_MODEL, CLIENT_MODEL)
    assert b'"usage"' not in not_asked.content


def test_upstream_comments_are_absorbed(gateway, mock, headers):
    upstream = upstream_bytes(mock, "ping")
    assert any(block.startswith(b":") for block in events(upstream))  # the mock does send them
    r = through(gateway, headers, "ping")
    expected = b"".join(block + b"\n\n" for block in data_events(upstream))
    assert r.content == expected.replace(UPSTREAM_MODEL, CLIENT_MODEL)


def _before_failure(mock, scenario):
    blocks = data_events(upstream_bytes(mock, scenario))
    return [b.replace(UPSTREAM_MODEL, CLIENT_MODEL) + b"\n\n" for b in blocks]


def test_error_event_mid_stream(gateway, mock, headers):
    upstream = _before_failure(mock, "error_mid_stream")
    assert b'"error"' in upstream[-1]
    r = through(gateway, headers, "error_mid_stream")
    assert r.status_code == 200
    assert r.content == b"".join(upstream[:-1]) + (
        b'data: {"error":"API error: The service encountered an unexpected error while generating '
        b'the response."}\n\n')
    assert b"[DONE]" not in r.content


def test_malformed_chunk_becomes_an_error(gateway, mock, headers):
    r = through(gateway, headers, "malformed")
    good = [b for b in _before_failure(mock, "malformed")][:2]
    assert r.content == b"".join(good) + \
        b'data: {"error":"API error: the upstream sent an event that is not a JSON object"}\n\n'


def test_upstream_disconnect_mid_stream(gateway, mock, headers):
    r = through(gateway, headers, "disconnect")
    blocks = data_events(r.content)
    assert len(blocks) == 4
    assert blocks[-1] == b'data: {"error":"API error: upstream closed the connection before the response ended"}'
    assert b"[DONE]" not in r.content


@pytest.mark.parametrize("scenario,status,message", [
    ("http_400", 400, None),
    ("http_401", 502, "the upstream rejected the gateway's credentials (HTTP 401)"),
    ("http_429", 429, None),
    ("http_500", 502, None),
])
def test_upstream_error_status_before_the_stream(gateway, mock, headers, scenario, status, message):
    up = direct(mock, chat_body(), {"X-Mock-Scenario": scenario})
    text = up.json()["error"]
    r = through(gateway, headers, scenario)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    if message is None:
        message = text if status != 502 else "upstream error (HTTP 500): " + text
    assert r.content == ('data: {"error":"API error: %s"}\n\n' % message).encode()
    if scenario == "http_429":
        assert r.headers["Retry-After"] == "7"


@pytest.mark.parametrize("scenario,status", [("http_400", 400), ("http_401", 502), ("http_429", 429),
                                             ("http_500", 502)])
def test_upstream_error_status_without_streaming(gateway, mock, headers, scenario, status):
    r = post(gateway.base + "/chat/completions", chat_body(stream=False),
             dict(headers, **{"X-Mock-Scenario": scenario}))
    assert r.status_code == status
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    err = r.json()["error"]
    assert err["message"].startswith("API error: ")
    assert err["type"] in ("invalid_request_error", "rate_limit_error", "upstream_error")


def test_non_streaming_answer_shows_the_asked_model(gateway, mock, headers):
    r = post(gateway.base + "/chat/completions", chat_body(stream=False), dict(headers, **{"X-Mock-Scenario": "story"}))
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == SEED_MODEL
    assert body["choices"][0]["message"]["content"]
