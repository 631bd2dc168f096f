"""The official OpenAI Python SDK against the gateway, with no extra options."""

import asyncio

import openai
import pytest

from tests.wire import SEED_MODEL, SEED_PROMPT, chat_body, contents, direct

MESSAGES = [{"role": "user", "content": SEED_PROMPT}]


def test_sync_stream_and_whole_answer_agree(openai_client, mock):
    streamed = "".join(c.choices[0].delta.content or "" for c in openai_client.chat.completions.create(
        model=SEED_MODEL, messages=MESSAGES, stream=True) if c.choices)
    whole = openai_client.chat.completions.create(model=SEED_MODEL, messages=MESSAGES)
    assert streamed == whole.choices[0].message.content
    assert streamed == contents(direct(mock, chat_body(model="grok-4.20-non-reasoning")).content)
    assert whole.model == SEED_MODEL
    assert whole.usage.total_tokens > 0


def test_async_client_streams(async_openai_client, openai_client):
    async def collect():
        stream = await async_openai_client.chat.completions.create(
            model=SEED_MODEL, messages=MESSAGES, stream=True)
        parts, models = [], set()
        async for chunk in stream:
            models.add(chunk.model)
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts), models

    text, models = asyncio.run(collect())
    whole = openai_client.chat.completions.create(model=SEED_MODEL, messages=MESSAGES)
    assert text == whole.choices[0].message.content
    assert models == {SEED_MODEL}


def test_usage_when_asked(openai_client):
    chunks = list(openai_client.chat.completions.create(
        model=SEED_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0


def test_reasoning_and_tool_calls_pass_through(openai_client):
    reasoning = list(openai_client.chat.completions.create(
        model=SEED_MODEL, messages=MESSAGES, stream=True, extra_headers={"X-Mock-Scenario": "reasoning"}))
    first = reasoning[0].choices[0].delta
    assert getattr(first, "reasoning_content", None) or first.model_extra.get("reasoning_content")
    tools = list(openai_client.chat.completions.create(
        model=SEED_MODEL, messages=MESSAGES, stream=True, extra_headers={"X-Mock-Scenario": "tool_call"}))
    calls = [c for chunk in tools for choice in chunk.choices for c in (choice.delta.tool_calls or [])]
    assert calls and calls[0].function.name
    assert tools[-1].choices[0].finish_reason == "tool_calls"


def test_images_generate(openai_client):
    result = openai_client.images.generate(prompt="a lighthouse on Mars", n=2)
    assert len(result.data) == 2
    assert result.data[0].url or result.data[0].b64_json


def test_models_list_has_upstream_models_and_aliases(openai_client):
    ids = {m.id for m in openai_client.models.list()}
    assert "grok-4.20-non-reasoning" in ids
    assert SEED_MODEL in ids
    assert openai_client.models.retrieve(SEED_MODEL).id == SEED_MODEL


def test_in_band_error_raises_api_error(openai_client):
    stream = openai_client.chat.completions.create(
        model=SEED_MODEL, messages=MESSAGES, stream=True,
        extra_headers={"X-Mock-Scenario": "error_mid_stream"})
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_bad_key_and_bad_request(gateway):
    bad = openai.OpenAI(api_key="tg-not-a-key", base_url=gateway.base, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=SEED_MODEL, messages=MESSAGES)
    client = openai.OpenAI(api_key="x", base_url=gateway.base, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_bad_request_message_reaches_the_sdk(openai_client):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model=SEED_MODEL, messages=[])
    assert "messages" in str(info.value)
