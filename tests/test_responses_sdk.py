"""The Responses API through the gateway as the official OpenAI Python SDK (and LangChain) use it:
create streamed and not, the stream() helper, retrieve/delete, a function-call round trip with
previous_response_id, the async client, errors that end a stream, and the README's quick-start.
"""

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import openai
import pytest

from tests import servers

MODEL = "grok-4-1-fast-non-reasoning"
STORY = ("Once upon a time, the starship Aurora drifted past the rings of Saturn, its crew dreaming of "
         "home. The end.")


def scenario(name):
    return {"X-Mock-Scenario": name}


def test_create_whole(openai_client):
    response = openai_client.responses.create(model=MODEL, input="hello from the sdk")
    assert response.status == "completed" and response.model == MODEL
    assert response.output_text == "Mock answer to: hello from the sdk"
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_create_streamed(openai_client):
    stream = openai_client.responses.create(model=MODEL, input="a story", stream=True,
                                            extra_headers=scenario("story"))
    events = list(stream)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == STORY
    final = events[-1].response
    assert final.model == MODEL and final.output_text == STORY and final.usage.total_tokens == 34


def test_stream_helper_and_final_response(openai_client):
    deltas = []
    with openai_client.responses.stream(model=MODEL, input="think first", extra_headers=scenario("reasoning")) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Waves fold into foam, the moon pulls the tide home."
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text.startswith("The user wants a haiku")
    assert final.usage.output_tokens_details.reasoning_tokens == 18


def test_web_search_and_incomplete_are_events_the_sdk_reads(openai_client):
    events = list(openai_client.responses.create(model=MODEL, input="search", stream=True,
                                                 tools=[{"type": "web_search"}], extra_headers=scenario("web_search")))
    kinds = [e.type for e in events]
    assert kinds.index("response.web_search_call.searching") < kinds.index("response.output_text.delta")
    assert events[-1].response.output[0].type == "web_search_call"
    incomplete = list(openai_client.responses.create(model=MODEL, input="x", stream=True,
                                                     extra_headers=scenario("incomplete")))[-1]
    assert incomplete.type == "response.incomplete"
    assert incomplete.response.incomplete_details.reason == "max_output_tokens"


def test_retrieve_and_delete(openai_client):
    created = openai_client.responses.create(model=MODEL, input="keep this one")
    again = openai_client.responses.retrieve(created.id)
    assert again.id == created.id and again.output_text == created.output_text
    resumed = list(openai_client.responses.retrieve(created.id, stream=True, starting_after=2))
    assert resumed[0].sequence_number == 3 and resumed[-1].type == "response.completed"
    assert openai_client.responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError) as e:
        openai_client.responses.retrieve(created.id)
    assert "not found" in str(e.value)


def test_function_call_round_trip_with_previous_response_id(openai_client):
    tools = [{"type": "function", "name": "get_weather", "description": "Current weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    with openai_client.responses.stream(model=MODEL, input="What is the weather in Paris?", tools=tools,
                                        extra_headers=scenario("function_call")) as stream:
        arguments = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        first = stream.get_final_response()
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(arguments) == json.loads(call.arguments) == {"city": "Paris"}
    second = openai_client.responses.create(
        model=MODEL, previous_response_id=first.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"}])
    assert second.previous_response_id == first.id
    assert second.output_text == "Mock answer to: 18 degrees and sunny"
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.create(model=MODEL, previous_response_id="resp_nobody", input="x")


def test_async_client(async_openai_client):
    async def run():
        whole = await async_openai_client.responses.create(model=MODEL, input="async hello")
        stream = await async_openai_client.responses.create(model=MODEL, input="x", stream=True,
                                                            extra_headers=scenario("story"))
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        return whole, text
    whole, text = asyncio.run(run())
    assert whole.output_text == "Mock answer to: async hello" and text == STORY


@pytest.mark.parametrize("name,message", [
    ("error_mid_stream", "The service encountered an unexpected error while generating the response."),  # xAI's text
    ("no_terminal", "API error: the upstream ended the stream without a terminal event"),
    ("malformed", "API error: the upstream sent an event that is not a JSON object"),
])
def test_a_broken_stream_raises_in_the_sdk_with_its_text(openai_client, name, message):
    seen = []
    with pytest.raises(openai.APIError) as e:
        for event in openai_client.responses.create(model=MODEL, input="x", stream=True, extra_headers=scenario(name)):
            seen.append(event.type)
    assert str(e.value).startswith(message)
    assert "response.output_text.delta" in seen  # what came before the failure was delivered
    with pytest.raises(openai.APIError) as helper:
        with openai_client.responses.stream(model=MODEL, input="x", extra_headers=scenario(name)) as stream:
            stream.get_final_response()
    assert str(helper.value).startswith(message)


def test_the_upstream_error_event_raises_in_the_sdk_with_xais_code_and_text(openai_client):
    """The mock's recorded xAI error event: the SDK raises APIError with xAI's own message and code,
    from responses.create(stream=True) and from responses.stream() alike."""
    text = "The service encountered an unexpected error while generating the response."
    with pytest.raises(openai.APIError) as e:
        list(openai_client.responses.create(model=MODEL, input="x", stream=True,
                                            extra_headers=scenario("error_mid_stream")))
    assert (str(e.value), e.value.code, e.value.param) == (text, "server_error", None)
    assert e.value.body == {"code": "server_error", "message": text, "param": None}
    with pytest.raises(openai.APIError) as helper:
        with openai_client.responses.stream(model=MODEL, input="x", extra_headers=scenario("error_mid_stream")) as s:
            s.get_final_response()
    assert (str(helper.value), helper.value.code) == (text, "server_error")


def test_an_error_before_the_stream_is_the_sdk_status_error_with_text(gateway):
    client = openai.OpenAI(api_key="not-a-key", base_url=gateway.base, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        client.responses.create(model=MODEL, input="x", stream=True)
    assert e.value.status_code == 401 and "API error: " in str(e.value)


def test_langchain_chat_openai_with_the_responses_api(gateway, key):
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(model=MODEL, api_key=key, base_url=gateway.base, use_responses_api=True,
                                      max_retries=0, default_headers=scenario("story"))
    assert llm.invoke("tell me a story").text == STORY
    chunks = [c.text for c in llm.stream("tell me a story")]
    assert "".join(chunks) == STORY


def test_readme_quick_start_with_only_base_url_changed(tmp_path):
    """The README's Responses quick-start, run as written against a gateway on the bundled mock."""
    readme = open(os.path.join(servers.ROOT, "README.md")).read()
    start = readme.index("<!-- responses-quick-start -->")
    code = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'base_url="http://127.0.0.1:8000/api/v1"' in code
    g = servers.start_gateway(str(tmp_path), None, upstream_key=None)
    try:
        key = servers.add_key(os.path.join(str(tmp_path), "keys.json"), "quick")
        code = code.replace("http://127.0.0.1:8000", g.url)
        script = "KEY = %r\n" % key + textwrap.dedent(code)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == STORY
    finally:
        g.stop()
