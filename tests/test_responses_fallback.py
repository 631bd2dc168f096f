"""Vision in the Responses API (input_image parts) follows the seed's rule: a stream request is sent
upstream with stream false and answered whole with X-Stream-Fallback: true; with
stream_fallback_format = "sse", as one Responses event sequence the SDK reads."""

import json
import uuid

import openai
import pytest

from tests import hardening_helpers as hh
from tests.wire import events, post

MODEL = "grok-4-1-fast-non-reasoning"
IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
INPUT = [{"role": "user", "content": [{"type": "input_text", "text": "what is in this picture"},
                                      {"type": "input_image", "image_url": IMAGE}]}]


def request(stream=True):
    return {"model": MODEL, "input": INPUT, "stream": stream}


def test_stream_with_an_image_is_answered_whole(gateway, mock, headers):
    test_id = uuid.uuid4().hex
    r = post(gateway.base + "/responses", request(), dict(headers, **{"X-Mock-Test-Id": test_id}))
    assert r.status_code == 200 and r.headers["X-Stream-Fallback"] == "true"
    assert r.headers["Content-Type"].startswith("application/json")
    answer = r.json()
    assert answer["object"] == "response" and answer["model"] == MODEL
    assert answer["output"][0]["content"][0]["text"] == "Mock answer to: what is in this picture"
    sent = mock.journal(test_id)[-1]
    assert sent["path"] == "/v1/responses" and sent["body"]["stream"] is False
    whole = post(gateway.base + "/responses", request(stream=False), headers)
    assert whole.status_code == 200 and "X-Stream-Fallback" not in whole.headers


@pytest.fixture
def sse_gateway(make_gateway):
    return make_gateway(settings={"stream_fallback_format": "sse"})


def test_sse_fallback_is_one_event_sequence(sse_gateway):
    g, key = sse_gateway
    r = post(g.base + "/responses", request(), hh.auth(key))
    assert r.headers["X-Stream-Fallback"] == "true"
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    blocks = events(r.content)
    kinds = [b.split(b"\n", 1)[0][len(b"event: "):].decode() for b in blocks]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta", "response.output_text.done",
                     "response.content_part.done", "response.output_item.done", "response.completed"]
    payloads = [json.loads(b.split(b"\ndata: ", 1)[1]) for b in blocks]
    assert [p["sequence_number"] for p in payloads] == list(range(9))
    assert payloads[-1]["response"]["usage"]["total_tokens"] > 0


def test_sdk_reads_the_sse_fallback(sse_gateway):
    g, key = sse_gateway
    client = openai.OpenAI(api_key=key, base_url=g.base, max_retries=0)
    raw = client.responses.with_raw_response.create(model=MODEL, input=INPUT, stream=True)
    assert raw.headers["x-stream-fallback"] == "true"
    text = "".join(e.delta for e in raw.parse() if e.type == "response.output_text.delta")
    assert text == "Mock answer to: what is in this picture"
    with client.responses.stream(model=MODEL, input=INPUT) as stream:
        final = stream.get_final_response()
    assert final.output_text == text and final.model == MODEL
