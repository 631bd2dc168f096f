"""The mock replays every bundled recording byte for byte at speed 0, and the synthetic generator
speaks mock_sse.js's bytes."""

import json
import re

import pytest
import requests

from mock_upstream import recordings
from tests.mock_helpers import mock_headers, start_mock

AUTH = {"Authorization": "Bearer test-key-0123456789"}
RECORDINGS = recordings.load_all()
STREAMS = sorted(n for n, r in RECORDINGS.items() if r.kind == "stream" and n not in ("stall", "disconnect"))


@pytest.fixture(scope="module")
def mock():
    with start_mock("--speed", "0") as m:
        yield m


def chat(mock, body, **headers):
    session = requests.Session()
    session.trust_env = False
    return session.post(mock.base + "/chat/completions", json=body, headers={**AUTH, **headers}, timeout=10)


def body(text="Write a short story", model="grok-4.20-non-reasoning", stream=True, usage=False):
    b = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    if usage:
        b["stream_options"] = {"include_usage": True}
    return b


def expected(name, model, include_usage=False):
    plan = RECORDINGS[name].plan(model, True, include_usage)
    return b"".join(step.data for step in plan.steps)


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("usage", [False, True])
def test_recording_bytes_at_speed_0(mock, name, usage):
    send = chat if RECORDINGS[name].api == "chat" else responses  # a Responses recording has no usage option
    r = send(mock, body(usage=usage, model="my-model"), **mock_headers(name))
    assert r.status_code == RECORDINGS[name].status
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.content == expected(name, "my-model", usage and send is chat)
    again = send(mock, body(usage=usage, model="my-model"), **mock_headers(name))
    assert again.content == r.content


def responses(mock, chat_body, **headers):
    """The same request to /v1/responses (a chat body's last message as the input)."""
    session = requests.Session()
    session.trust_env = False
    body = {"model": chat_body["model"], "input": chat_body["messages"][-1]["content"], "stream": chat_body["stream"]}
    return session.post(mock.base + "/responses", json=body, headers={**AUTH, **headers}, timeout=10)


def test_story_is_what_the_file_says(mock):
    r = chat(mock, body(model="grok-echo"), **mock_headers("story"))
    events = r.content.split(b"\n\n")
    assert events[0] == (b'data: {"id":"chatcmpl-mock-1001","object":"chat.completion.chunk","created":1767225600,'
                         b'"model":"grok-echo","choices":[{"index":0,"delta":{"role":"assistant","content":"Once"},'
                         b'"finish_reason":null}],"system_fingerprint":"fp_mock"}')
    assert events[-2:] == [b"data: [DONE]", b""]
    chunks = [json.loads(e[6:]) for e in events[:-2]]
    assert len(chunks) == 21 and all(c["model"] == "grok-echo" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[-1]


def test_usage_chunk_only_when_asked(mock):
    with_usage = chat(mock, body(usage=True), **mock_headers("story")).content.split(b"\n\n")
    usage = json.loads(with_usage[-3][6:])
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 34
    assert b'"usage"' not in chat(mock, body(), **mock_headers("story")).content
    always = chat(mock, body(), **mock_headers("usage")).content.split(b"\n\n")
    assert json.loads(always[-3][6:])["choices"] == []


@pytest.mark.parametrize("name", sorted(n for n, r in RECORDINGS.items() if r.kind == "json"))
@pytest.mark.parametrize("stream", [False, True])
def test_json_recordings(mock, name, stream):
    rec = RECORDINGS[name]
    r = chat(mock, body(stream=stream, model="my-model"), **mock_headers(name))
    assert r.status_code == rec.status
    if rec.status >= 400 or not stream:
        assert r.content == rec.plan("my-model", False, False).body
        err = r.json()
        if rec.status >= 400:
            assert set(err) == {"code", "error"} and all(isinstance(v, str) for v in err.values())
    else:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        whole = json.loads(rec.plan("my-model", False, False).body)
        events = r.content.split(b"\n\n")
        assert events[-2:] == [b"data: [DONE]", b""] and all(e.startswith(b"data: {") for e in events[:-2])
        first = json.loads(events[0][6:])
        assert first["object"] == "chat.completion.chunk" and first["model"] == "my-model"
        assert first["choices"][0]["delta"] == whole["choices"][0]["message"]


def test_http_429_has_retry_after(mock):
    r = chat(mock, body(), **mock_headers("http_429"))
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"


def test_non_stream_request_gets_the_summed_up_completion(mock):
    r = chat(mock, body(stream=False, model="my-model"), **mock_headers("story"))
    completion = r.json()
    assert r.headers["Content-Type"] == "application/json"
    assert completion["object"] == "chat.completion" and completion["model"] == "my-model"
    assert completion["choices"][0]["message"]["content"].startswith("Once upon a time,")
    assert completion["usage"]["total_tokens"] == 34
    tool = chat(mock, body(stream=False), **mock_headers("tool_call")).json()
    assert tool["choices"][0]["finish_reason"] == "tool_calls"
    assert tool["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_reasoning_comes_before_content(mock):
    events = [json.loads(e[6:]) for e in chat(mock, body(), **mock_headers("reasoning")).content.split(b"\n\n")
              if e.startswith(b"data: {")]
    kinds = [("r" if "reasoning_content" in c["choices"][0]["delta"] else "c") for c in events if c["choices"]
             and c["choices"][0]["delta"]]
    assert kinds == sorted(kinds, key=lambda k: k == "c") and "r" in kinds and "c" in kinds


def test_error_mid_stream_ends_without_done(mock):
    r = chat(mock, body(), **mock_headers("error_mid_stream"))
    events = r.content.split(b"\n\n")
    assert json.loads(events[-2][6:]) == {"code": "Internal error", "error": json.loads(events[-2][6:])["error"]}
    assert b"[DONE]" not in r.content


SSE_RE = re.compile(rb'data: \{"id":"chatcmpl-bench","object":"chat\.completion\.chunk","created":(\d+),"model":"m","choices":\[\{"index":0,"delta":')


def test_synthetic_bytes_match_mock_sse_js(mock):
    """mock_sse.js's bytes, but for the usage: in its own chunk with `choices: []`, as xAI sends it."""
    r = chat(mock, body("chunks=3 size=5", model="m", usage=True))
    head = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":%s,"model":"m","choices":[{"index":0,"delta":'
    created = SSE_RE.match(r.content).group(1)
    h = head % created
    want = (h + b'{"content":"abcde"},"finish_reason":null}]}\n\n'
            + h + b'{"content":"bcdef"},"finish_reason":null}]}\n\n'
            + h + b'{"content":"cdefg"},"finish_reason":null}]}\n\n'
            + h + b'{},"finish_reason":"stop"}]}\n\n'
            + b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":%s,"model":"m","choices":[],'
              b'"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}\n\n' % created
            + b"data: [DONE]\n\n")
    assert r.content == want
    # Not asked: no usage anywhere.
    plain = chat(mock, body("chunks=3 size=5", model="m")).content
    assert b'"usage"' not in plain and plain.endswith(b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')


def test_synthetic_non_stream(mock):
    r = chat(mock, body("chunks=2 size=3", model="m", stream=False)).json()
    assert r["choices"][0]["message"]["content"] == "abcbcd"
    assert r["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_default_answer_is_deterministic(mock):
    a = chat(mock, body("hello mock world", stream=False)).json()
    assert a["choices"][0]["message"]["content"] == "Mock answer to: hello mock world"
    assert a["id"].startswith("chatcmpl-mock-") and "usage" in a
    s = chat(mock, body("hello mock world", usage=True)).content
    texts = [json.loads(e[6:]) for e in s.split(b"\n\n") if e.startswith(b"data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in texts if c["choices"]) == a["choices"][0]["message"]["content"]
    assert texts[-1]["usage"]["completion_tokens"] == 6
