"""Stream fallback: vision (both routes) and images answer whole, with X-Stream-Fallback: true."""

import base64
import json
import uuid

import openai
import pytest

from tests.wire import SEED_MODEL, post

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def vision_chat(stream=True):
    return {"model": SEED_MODEL, "stream": stream, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": PNG}}]}]}


def tagged(headers):
    test_id = uuid.uuid4().hex
    return dict(headers, **{"X-Mock-Test-Id": test_id}), test_id


@pytest.mark.parametrize("path,body", [
    ("/vision/analyze", {"image_url": PNG, "prompt": "What is in this picture?", "stream": True}),
    ("/chat/completions", vision_chat()),
])
def test_vision_stream_falls_back_to_json(gateway, mock, headers, path, body):
    h, test_id = tagged(headers)
    r = post(gateway.base + path, body, h)
    assert r.status_code == 200
    assert r.headers["X-Stream-Fallback"] == "true"
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    answer = r.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"]
    assert answer["usage"]["total_tokens"] > 0
    sent = mock.journal(test_id=test_id)[-1]["body"]
    assert sent["stream"] is False
    assert "stream_options" not in sent
    assert any(part.get("type") == "image_url" for part in sent["messages"][0]["content"])


def test_vision_without_stream_has_no_fallback_header(gateway, mock, headers):
    h, test_id = tagged(headers)
    r = post(gateway.base + "/vision/analyze", {"image_url": "https://example.com/cat.jpg",
                                                 "prompt": "Describe", "detail": "low", "max_tokens": 50}, h)
    assert r.status_code == 200
    assert "X-Stream-Fallback" not in r.headers
    sent = mock.journal(test_id=test_id)[-1]["body"]
    assert sent["model"] == "grok-4.3"  # the configured default vision model
    assert sent["max_tokens"] == 50
    assert sent["messages"][0]["content"][0] == {"type": "image_url", "image_url": {
        "url": "https://example.com/cat.jpg", "detail": "low"}}


def test_images_with_stream_fall_back(gateway, mock, headers):
    h, test_id = tagged(headers)
    r = post(gateway.base + "/images/generate", {"prompt": "a red panda", "stream": True, "n": 1}, h)
    assert r.status_code == 200
    assert r.headers["X-Stream-Fallback"] == "true"
    assert len(r.json()["data"]) == 1
    sent = mock.journal(test_id=test_id)[-1]
    assert sent["path"] == "/v1/images/generations"
    assert "stream" not in sent["body"]


@pytest.mark.parametrize("body,status,words", [
    ({"prompt": "x"}, 400, "field 'image_url' is required"),
    ({"image_url": PNG}, 400, "field 'prompt' is required"),
    ({"image_url": "http://example.com/a.png", "prompt": "x"}, 400, "must be an https:// URL or a data:image"),
    ({"image_url": "data:image/gif;base64,AAAA", "prompt": "x"}, 400, "must be an https:// URL or a data:image"),
    ({"image_url": "data:image/png;base64,@@@@", "prompt": "x"}, 400, "not valid base64"),
    ({"image_url": PNG, "prompt": "x", "detail": "ultra"}, 400, "field 'detail' must be one of auto, low, high"),
    ({"image_url": "data:image/png;base64," + "A" * (14 * 1024 * 1024), "prompt": "x"}, 413,
     "larger than 10485760 bytes"),
])
def test_vision_request_errors(gateway, headers, body, status, words):
    r = post(gateway.base + "/vision/analyze", body, headers)
    assert r.status_code == status
    assert words in r.json()["error"]["message"]


def test_sse_fallback_format_lets_the_sdk_stream(make_gateway, mock):
    gateway, key = make_gateway({"stream_fallback_format": "sse"})
    h = {"Authorization": "Bearer " + key}
    r = post(gateway.base + "/vision/analyze", {"image_url": PNG, "prompt": "Describe", "stream": True}, h)
    assert r.headers["X-Stream-Fallback"] == "true"
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    blocks = r.content.split(b"\n\n")
    assert blocks[1:] == [b"data: [DONE]", b""]
    chunk = json.loads(blocks[0][len(b"data: "):])
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"][0]["delta"]["content"]
    client = openai.OpenAI(api_key=key, base_url=gateway.base, max_retries=0)
    streamed = list(client.chat.completions.create(stream=True, **{
        k: v for k, v in vision_chat().items() if k != "stream"}))
    assert len(streamed) == 1 and streamed[0].choices[0].delta.content
