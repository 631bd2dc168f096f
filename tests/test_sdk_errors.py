"""Errors as the SDKs see them: openai-python, openai-node and LangChain each report the error's
text and the right status class, streamed or not, and do not retry permanent errors; the seed's own
requests and curl examples still get the seed's SSE event, byte for byte (docs/api.md "Errors")."""

import json
import os
import shutil
import subprocess
import uuid

import openai
import pytest
import requests

from tests.test_seed_examples import CURL_EXAMPLE, swap
from tests.wire import SEED_MODEL, SEED_PROMPT, chat_body

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
MESSAGES = [{"role": "user", "content": SEED_PROMPT}]
SEED_EVENT = b'data: {"error":"API error: Invalid authentication token"}\n\n'

# name -> (status, SDK exception class, text streamed, text whole, calls the upstream sees per request)
CASES = {
    "401": (401, openai.AuthenticationError, "API error: Invalid authentication token", None, 0),
    "400": (400, openai.BadRequestError, "API error: This model's maximum prompt length is 131072", None, 1),
    "410": (410, openai.APIStatusError, "API error: The model grok-beta was retired on 2025-09-15", None, 1),
    "429": (429, openai.RateLimitError, "API error: rate limit reached for this key (1 requests per minute)",
            None, 0),
    "502": (502, openai.InternalServerError, "API error: upstream error (HTTP 500): boom", None, 1),
    "504": (504, openai.InternalServerError, "API error: upstream first event timeout",
            "API error: upstream timed out", 1),
}
FAULTS = {"400": {"status": 400, "error": "This model's maximum prompt length is 131072"},
          "410": {"status": 410, "error": "The model grok-beta was retired on 2025-09-15"},
          "502": {"status": 500, "error": "boom"},
          "504": {"slow_headers_ms": 1500}}


@pytest.fixture
def case(request, gateway, key, mock, make_gateway):
    """(base URL, key, test id) of a gateway that answers the case's error."""
    name = request.param
    test_id = uuid.uuid4().hex
    base = gateway.base
    if name == "401":
        key = "tg-wrong"
    elif name == "429":
        g, key = make_gateway({"requests_per_minute": 1})
        base = g.base
        assert requests.get(base + "/models", headers={"Authorization": "Bearer " + key}).status_code == 200
    elif name == "504":
        g, key = make_gateway({"first_event_timeout": 0.2})
        base = g.base
    if name in FAULTS:
        mock.set_fault(test_id, FAULTS[name])
    yield name, base, key, test_id
    mock.clear_faults(test_id)


def expected(name, stream):
    status, cls, text_stream, text_whole, calls = CASES[name]
    return status, cls, text_stream if stream or text_whole is None else text_whole, calls


def check_text(text, want, name):
    # The rate-limit message ends with the seconds left, which depend on the clock.
    assert text.startswith(want) if name == "429" else text == want, (text, want)


@pytest.mark.parametrize("case", list(CASES), indirect=True)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_openai_python(case, stream, mock):
    name, base, key, test_id = case
    status, cls, text, calls = expected(name, stream)
    # Retries allowed: a permanent error must still reach the upstream only once.
    retries = 0 if status >= 429 else 2
    client = openai.OpenAI(api_key=key, base_url=base, max_retries=retries,
                           default_headers={"X-Mock-Test-Id": test_id})
    with pytest.raises(openai.APIStatusError) as info:
        result = client.chat.completions.create(model=SEED_MODEL, messages=MESSAGES, stream=stream)
        for _chunk in (result if stream else ()):
            pass
    e = info.value
    assert type(e) is cls and e.status_code == status
    check_text(str(e), "Error code: %d - %s" % (status, text), name)
    check_text(e.message, "Error code: %d - %s" % (status, text), name)
    assert e.body["message"].startswith(text[:40])
    assert len(mock.journal(test_id=test_id)) == calls


@pytest.mark.parametrize("case", ["401", "410", "502"], indirect=True)
def test_openai_python_async(case):
    import asyncio
    name, base, key, test_id = case
    status, cls, text, _calls = expected(name, True)

    async def run():
        client = openai.AsyncOpenAI(api_key=key, base_url=base, max_retries=0,
                                    default_headers={"X-Mock-Test-Id": test_id})
        stream = await client.chat.completions.create(model=SEED_MODEL, messages=MESSAGES, stream=True)
        async for _chunk in stream:
            pass

    with pytest.raises(cls) as info:
        asyncio.run(run())
    assert str(info.value) == "Error code: %d - %s" % (status, text)


def test_permanent_upstream_errors_are_not_retried(gateway, key, mock):
    """410 keeps its status (it was a 502, which the SDKs retry); an upstream 401 is a 502 marked
    x-should-retry: false (a retry cannot fix the gateway's own key)."""
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"status": 401, "error": "Incorrect API key provided"})
    client = openai.OpenAI(api_key=key, base_url=gateway.base, max_retries=2,
                           default_headers={"X-Mock-Test-Id": test_id})
    try:
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model=SEED_MODEL, messages=MESSAGES, stream=True)
    finally:
        mock.clear_faults(test_id)
    assert info.value.response.headers["x-should-retry"] == "false"
    assert str(info.value) == "Error code: 502 - API error: the upstream rejected the gateway's credentials (HTTP 401)"
    assert len(mock.journal(test_id=test_id)) == 1


def _langchain():
    return pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")


@pytest.mark.parametrize("case", list(CASES), indirect=True)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_langchain(case, stream):
    langchain_openai = _langchain()
    name, base, key, test_id = case
    status, cls, text, _calls = expected(name, stream)
    llm = langchain_openai.ChatOpenAI(model=SEED_MODEL, api_key=key, base_url=base, max_retries=0,
                                      default_headers={"X-Mock-Test-Id": test_id})
    with pytest.raises(openai.APIStatusError) as info:
        if stream:
            for _chunk in llm.stream(SEED_PROMPT):
                pass
        else:
            llm.invoke(SEED_PROMPT)
    assert info.value.status_code == status and isinstance(info.value, cls)
    check_text(str(info.value), "Error code: %d - %s" % (status, text), name)


def _node():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "openai")):
        pytest.skip("openai-node is not installed: run `npm ci` in tests/node")
    return node


@pytest.mark.parametrize("case", list(CASES), indirect=True)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_openai_node(case, stream, mock):
    node = _node()
    name, base, key, test_id = case
    status, _cls, text, calls = expected(name, stream)
    retries = 0 if status >= 429 else 2
    out = subprocess.run([node, "errors.mjs", base, key, "stream" if stream else "whole", test_id, str(retries)],
                         cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] is False and result["status"] == status
    check_text(result["message"], "%d %s" % (status, text), name)
    assert result["name"] == {401: "AuthenticationError", 400: "BadRequestError", 410: "APIError",
                              429: "RateLimitError"}.get(status, "InternalServerError")
    assert len(mock.journal(test_id=test_id)) == calls


def test_seed_requests_example_gets_the_seed_event(gateway):
    # The seed's example headers (Accept: text/event-stream), with a key the gateway does not know.
    headers = {"Authorization": "Bearer your_api_key", "Content-Type": "application/json",
               "Accept": "text/event-stream"}
    r = requests.post(gateway.base + "/chat/completions", headers=headers, json=chat_body(), stream=True)
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert r.raw.read() == SEED_EVENT


def test_seed_curl_example_gets_the_seed_event(gateway):
    out = subprocess.run(["bash", "-c", swap(CURL_EXAMPLE, gateway, "your_api_key").rstrip() + " -s -D /dev/stderr"],
                         capture_output=True, timeout=60, check=True)
    assert out.stdout == SEED_EVENT
    assert out.stderr.split(b"\r\n", 1)[0] == b"HTTP/1.1 401 Unauthorized"


@pytest.mark.parametrize("accept,sse", [
    ("application/json", False), ("Application/JSON; charset=utf-8", False),
    ("text/event-stream", True), ("*/*", True), (None, True),
    ("application/json, text/event-stream", True), ("text/event-stream, application/json", True),
])
def test_which_clients_get_json(gateway, accept, sse):
    headers = {"Authorization": "Bearer tg-wrong", "Content-Type": "application/json"}
    if accept is not None:
        headers["Accept"] = accept
    r = requests.post(gateway.base + "/chat/completions", headers=headers, json=chat_body())
    if accept is None:  # requests' own default is */*: send none at all
        r = requests.Request("POST", gateway.base + "/chat/completions", headers=headers, json=chat_body())
        prepared = r.prepare()
        prepared.headers.pop("Accept", None)
        r = requests.Session().send(prepared)
    assert r.status_code == 401
    if sse:
        assert r.content == SEED_EVENT
    else:
        assert r.json() == {"error": {"message": "API error: Invalid authentication token",
                                      "type": "authentication_error", "code": "invalid_api_key"}}
