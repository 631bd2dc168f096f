"""The xAI surface: models, images, validation errors, scenario selection, and the OpenAI SDK."""

import base64
import json

import openai
import pytest
import requests

from tests.mock_helpers import mock_headers, start_mock

AUTH = {"Authorization": "Bearer test-key-0123456789"}
STORY = ("Once upon a time, the small ship Kestrel drifted past the rings of Saturn, its crew of three listening"
         " to the hum of the engines. They were home.")


@pytest.fixture(scope="module")
def mock():
    with start_mock("--speed", "0") as m:
        yield m


@pytest.fixture
def http():
    s = requests.Session()
    s.trust_env = False
    s.headers.update(AUTH)
    return s


@pytest.fixture
def client(mock):
    return openai.OpenAI(api_key="test-key-0123456789", base_url=mock.base, max_retries=0)


def test_models(http, mock):
    listing = http.get(mock.base + "/models").json()
    ids = [m["id"] for m in listing["data"]]
    assert listing["object"] == "list"
    assert ids == ["grok-4.20-non-reasoning", "grok-4.3", "grok-2-vision-1212", "grok-2-image-1212"]
    assert all(m["owned_by"] == "xai" and m["object"] == "model" for m in listing["data"])
    assert http.get(mock.base + "/models/grok-4.3").json()["id"] == "grok-4.3"
    missing = http.get(mock.base + "/models/grok-9")
    assert missing.status_code == 404 and set(missing.json()) == {"code", "error"}


def test_images_url_and_b64(http, mock):
    r = http.post(mock.base + "/images/generations", json={"model": "grok-2-image-1212", "prompt": "a cat", "n": 2}).json()
    assert len(r["data"]) == 2 and "created" in r
    url = r["data"][0]["url"]
    assert url.startswith(mock.url + "/_mock/images/") and url.endswith(".png")
    assert "a cat" in r["data"][0]["revised_prompt"]
    png = http.get(url)
    assert png.headers["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    b64 = http.post(mock.base + "/images/generations",
                    json={"prompt": "a dog", "response_format": "b64_json", "stream": True}).json()
    assert base64.b64decode(b64["data"][0]["b64_json"]).startswith(b"\x89PNG")


@pytest.mark.parametrize("body", [{"prompt": ""}, {"prompt": "x", "n": 11}, {"prompt": "x", "n": 0},
                                  {"prompt": "x", "response_format": "jpeg"}, {"n": 1}])
def test_image_validation(http, mock, body):
    r = http.post(mock.base + "/images/generations", json=body)
    assert r.status_code == 400 and set(r.json()) == {"code", "error"}


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"model":"m"}', b'{"messages":[{"role":"user","content":"x"}]}'])
def test_chat_validation(http, mock, raw):
    r = http.post(mock.base + "/chat/completions", data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.json()) == {"code", "error"}


def test_unknown_scenario_is_a_400(http, mock):
    r = http.post(mock.base + "/chat/completions", headers=mock_headers("nope"),
                  json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and "nope" in r.json()["error"]


def last_scenario(mock):
    return mock.journal()[-1]["scenario"]


@pytest.mark.parametrize("content,model,expected", [
    ("tell a story [mock:reasoning] please", "grok-4.3", "reasoning"),
    ([{"type": "text", "text": "hi"}, {"type": "text", "text": "[mock:tool_call]"}], "grok-4.3", "tool_call"),
    ("anything", "mock-usage", "usage"),
    ([{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}],
     "grok-4.3", "vision"),
    ("describe", "grok-2-vision-1212", "vision"),
    ("chunks=2 delay=0 size=3", "grok-4.3", "synthetic"),
    ("hello", "grok-4.3", "default"),
])
def test_scenario_selection(http, mock, content, model, expected):
    http.post(mock.base + "/chat/completions", json={"model": model, "messages": [{"role": "user", "content": content}]})
    assert last_scenario(mock) == expected


def test_selection_order(http, mock):
    body = {"model": "mock-usage", "messages": [{"role": "user", "content": "[mock:reasoning] chunks=3"}]}
    http.post(mock.base + "/chat/completions", json=body, headers=mock_headers("story"))
    assert last_scenario(mock) == "story"
    http.post(mock.base + "/chat/completions", json=body)
    assert last_scenario(mock) == "reasoning"
    body["messages"] = [{"role": "user", "content": "[mock:reasoning]"}, {"role": "user", "content": "chunks=3"}]
    http.post(mock.base + "/chat/completions", json=body)
    assert last_scenario(mock) == "usage"


def test_scenarios_endpoint_and_health(http, mock):
    names = mock.scenarios()
    for name in ("story", "reasoning", "tool_call", "usage", "error_mid_stream", "http_400", "http_401", "http_429",
                 "http_500", "disconnect", "stall", "ping", "utf8_split", "vision", "slow_first", "malformed",
                 "no_chunked", "synthetic", "default"):
        assert name in names
    assert http.get(mock.url + "/_mock/healthz").json()["ok"] is True


def test_sdk_streams_the_story(client):
    stream = client.chat.completions.create(model="grok-4.20-non-reasoning", stream=True,
                                            messages=[{"role": "user", "content": "[mock:story] go"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == STORY


def test_sdk_usage_reasoning_tools_and_non_stream(client):
    stream = client.chat.completions.create(model="mock-reasoning", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "haiku"}])
    chunks = list(stream)
    assert chunks[-1].usage.total_tokens == 33 and all(c.model == "mock-reasoning" for c in chunks)
    completion = client.chat.completions.create(model="mock-tool_call", messages=[{"role": "user", "content": "weather?"}])
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["location"] == "Paris"
    vision = client.chat.completions.create(model="grok-2-vision-1212", messages=[{"role": "user", "content": "?"}])
    assert "bicycle" in vision.choices[0].message.content and vision.usage.total_tokens == 846


def test_sdk_models_images_and_errors(client):
    assert [m.id for m in client.models.list()][:2] == ["grok-4.20-non-reasoning", "grok-4.3"]
    image = client.images.generate(model="grok-2-image-1212", prompt="a fox", response_format="b64_json")
    assert base64.b64decode(image.data[0].b64_json).startswith(b"\x89PNG")
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="mock-http_429", messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="mock-http_500", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="mock-error_mid_stream", stream=True,
                                            messages=[{"role": "user", "content": "x"}]))
