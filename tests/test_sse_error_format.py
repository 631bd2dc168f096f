"""`sse_error_format = "openai"`: every error event of a stream, before it began (its own status)
and in-band after it, is the OpenAI object form, whose message the OpenAI SDK shows; the default
stays the seed's string form (tests/test_stream_relay.py)."""

import json

import openai
import pytest

from tests.wire import chat_body, data_events, post


@pytest.fixture
def openai_gateway(make_gateway):
    return make_gateway({"sse_error_format": "openai"})


def error_of(raw: bytes) -> dict:
    last = data_events(raw)[-1]
    assert last.startswith(b'data: {"error":{'), raw[-300:]
    return json.loads(last[len(b"data: "):])["error"]


def test_in_band_errors_are_objects(openai_gateway):
    gateway, key = openai_gateway
    h = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    mid = post(gateway.base + "/chat/completions", chat_body(), dict(h, **{"X-Mock-Scenario": "error_mid_stream"}))
    assert mid.status_code == 200 and b"[DONE]" not in mid.content
    assert error_of(mid.content) == {
        "message": "API error: The service encountered an unexpected error while generating the response.",
        "type": "upstream_error", "code": "upstream_stream_error"}
    bad = post(gateway.base + "/chat/completions", chat_body(), dict(h, **{"X-Mock-Scenario": "malformed"}))
    assert error_of(bad.content) == {"message": "API error: the upstream sent an event that is not a JSON object",
                                     "type": "upstream_error", "code": "upstream_bad_event"}


def test_errors_before_the_stream_are_objects_with_their_status(openai_gateway):
    gateway, key = openai_gateway
    r = post(gateway.base + "/chat/completions", chat_body(), {"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.content == (b'data: {"error":{"message":"API error: Invalid authentication token",'
                         b'"type":"authentication_error","code":"invalid_api_key"}}\n\n')
    up = post(gateway.base + "/chat/completions", chat_body(),
              {"Authorization": "Bearer " + key, "X-Mock-Scenario": "http_500"})
    assert up.status_code == 502 and error_of(up.content)["type"] == "upstream_error"


def test_the_sdk_shows_the_message(openai_gateway):
    gateway, key = openai_gateway
    client = openai.OpenAI(api_key=key, base_url=gateway.base, max_retries=0,
                           default_headers={"X-Mock-Scenario": "error_mid_stream"})
    with pytest.raises(openai.APIError) as e:
        for _ in client.chat.completions.create(model="grok-4.3", stream=True,
                                                messages=[{"role": "user", "content": "hi"}]):
            pass
    assert "unexpected error while generating" in str(e.value.message)
