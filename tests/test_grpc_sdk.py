"""xAI's own SDK (xai-sdk, gRPC) through the gateway against the mock: the same recordings as REST,
message by message, with the gateway's keys, limits, ids, statuses, cancel and deadlines."""

import asyncio
import datetime
import json
import uuid

import grpc
import pytest
import requests
from xai_sdk import AsyncClient, Client
from xai_sdk.chat import tool, tool_result, user
from google.protobuf import empty_pb2
from xai_sdk.proto import chat_pb2, chat_pb2_grpc, deferred_pb2, models_pb2_grpc

STORY_PROMPT = "Write a short story about a space adventure"
MODEL = "grok-4.20-non-reasoning"


def sdk(gateway, key, **metadata) -> Client:
    return Client(api_key=key, api_host=gateway.grpc, use_insecure_channel=True,
                  metadata=tuple(metadata.items()) or None)


def rest_story(openai_client, scenario: str) -> tuple:
    """The REST answer for the same scenario: whole text, and the streamed deltas one by one."""
    whole = openai_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": STORY_PROMPT}], extra_headers={"X-Mock-Scenario": scenario})
    deltas = [c.choices[0].delta.content for c in openai_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": STORY_PROMPT}], stream=True,
        extra_headers={"X-Mock-Scenario": scenario}) if c.choices and c.choices[0].delta.content]
    return whole.choices[0].message.content, deltas


def test_sample_and_stream_replay_the_rest_recording(gateway, key, openai_client):
    text, deltas = rest_story(openai_client, "story")
    client = sdk(gateway, key, **{"x-mock-scenario": "story"})
    chat = client.chat.create(model=MODEL)
    chat.append(user(STORY_PROMPT))
    response = chat.sample()
    assert response.content == text
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (14, 20, 34)
    assert response.finish_reason == "REASON_STOP"
    chat = client.chat.create(model=MODEL)
    chat.append(user(STORY_PROMPT))
    streamed, final = [], None
    for final, chunk in chat.stream():
        if chunk.content:
            streamed.append(chunk.content)
    assert streamed == deltas  # message by message, as the SSE deltas
    assert final.content == text and final.usage.total_tokens == 34


def test_reasoning_content_arrives_before_content(gateway, key):
    chat = sdk(gateway, key, **{"x-mock-scenario": "reasoning"}).chat.create(model="grok-4.3")
    chat.append(user("Think first"))
    kinds = [("r" if c.reasoning_content else "c") for _r, c in chat.stream() if c.reasoning_content or c.content]
    assert kinds[0] == "r" and "c" in kinds and kinds == sorted(kinds, key=lambda k: k == "c")


def test_tool_call_round_trip(gateway, key):
    weather = tool(name="get_weather", description="The weather in a city",
                   parameters={"type": "object", "properties": {"location": {"type": "string"}}})
    chat = sdk(gateway, key, **{"x-mock-scenario": "tool_call"}).chat.create(model=MODEL, tools=[weather])
    chat.append(user("What is the weather in Paris?"))
    response = chat.sample()
    assert response.finish_reason == "REASON_TOOL_CALLS"
    [call] = response.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_mock_0001", "get_weather", {"location": "Paris", "unit": "celsius"})
    # The answer, on a client without the scenario: the mock's default answer echoes the question.
    chat = sdk(gateway, key).chat.create(model=MODEL, tools=[weather], messages=list(chat.messages))
    chat.append(response)
    chat.append(tool_result("18 degrees and sunny"))
    answer = chat.sample()
    assert answer.finish_reason == "REASON_STOP"
    assert answer.content.startswith("Mock answer to: What is the weather in Paris?")


def test_models_tokenize_image(gateway, key):
    client = sdk(gateway, key)
    listed = client.models.list_language_models()
    assert [m.name for m in listed] == ["grok-4.20-non-reasoning", "grok-4.3"]
    # The gateway's aliases (conf/model_aliases.toml) join the upstream's own, as in GET /models.
    assert [list(m.aliases) for m in listed] == [["grok-4-1-fast-non-reasoning"],
                                                 ["grok-latest", "grok-4-1-fast-reasoning", "grok-4-1-fast"]]
    assert client.models.get_language_model("grok-latest").name == "grok-4.3"
    assert client.models.get_language_model("grok-4-1-fast").name == "grok-4-1-fast"  # the name asked for
    assert [m.name for m in client.models.list_image_generation_models()] == ["grok-2-image-1212", "grok-imagine-image"]
    tokens = client.tokenize.tokenize_text("Hello there world", model=MODEL)
    assert [t.string_token for t in tokens] == ["Hello", " there", " world"]
    image = client.image.sample(prompt="a lighthouse", model="grok-2-image-1212", image_format="url")
    assert image.url.startswith("https://mock.invalid/_mock/images/") and image.url.endswith(".png")


def test_async_client_streams_and_samples(gateway, key, openai_client):
    text, deltas = rest_story(openai_client, "story")

    async def run():
        client = AsyncClient(api_key=key, api_host=gateway.grpc, use_insecure_channel=True,
                             metadata=(("x-mock-scenario", "story"),))
        chat = client.chat.create(model=MODEL)
        chat.append(user(STORY_PROMPT))
        streamed = [chunk.content async for _r, chunk in chat.stream() if chunk.content]
        chat = client.chat.create(model=MODEL)
        chat.append(user(STORY_PROMPT))
        whole = await chat.sample()
        models = await client.models.list_language_models()
        return streamed, whole.content, [m.name for m in models]

    streamed, whole, models = asyncio.run(run())
    assert streamed == deltas and whole == text
    assert models == ["grok-4.20-non-reasoning", "grok-4.3"]


def test_alias_applies_to_request_and_answer(gateway, key, mock):
    test_id = uuid.uuid4().hex
    client = sdk(gateway, key, **{"x-mock-scenario": "story", "x-mock-test-id": test_id})
    chat = client.chat.create(model="grok-4-1-fast-non-reasoning")  # conf/model_aliases.toml
    chat.append(user(STORY_PROMPT))
    models = {chunk.proto.model for _r, chunk in chat.stream()}
    assert models == {"grok-4-1-fast-non-reasoning"}  # the name asked for, on every message
    entry = mock.wait_ended(test_id=test_id)
    assert entry["method"] == "GRPC" and entry["path"] == "/xai_api.Chat/GetCompletionChunk"
    assert entry["body"]["model"] == MODEL  # the upstream's name went upstream
    assert entry["headers"]["authorization"] == "Bearer xai-…6789"  # the operator key, not the client's
    assert entry["deadline_s"] > 60  # xai-sdk's own deadline (27 minutes), passed on


def test_bad_key_is_unauthenticated_before_anything_else(gateway, key):
    for client in (sdk(gateway, "tg-not-a-key-of-this-gateway"),):
        with pytest.raises(grpc.RpcError) as e:
            client.models.list_language_models()
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "Invalid authentication token")
        with pytest.raises(grpc.RpcError) as e:  # a method that is not relayed: still the key first
            client.auth.get_api_key_info()
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(gateway.grpc) as channel:  # no key at all
        with pytest.raises(grpc.RpcError) as e:
            chat_pb2_grpc.ChatStub(channel).GetCompletion(chat_pb2.GetCompletionsRequest(model=MODEL))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert e.value.details() == "missing Authorization header; send 'Authorization: Bearer <key>'"


def test_the_key_and_account_services_are_not_relayed(gateway, key, mock):
    test_id = uuid.uuid4().hex
    with pytest.raises(grpc.RpcError) as e:
        sdk(gateway, key, **{"x-mock-test-id": test_id}).auth.get_api_key_info()
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert e.value.details() == "/xai_api.Auth/get_api_key_info is not relayed by this gateway"
    assert mock.journal(test_id) == []  # the upstream never saw it


def test_a_limit_is_resource_exhausted_with_when_to_retry(make_gateway):
    gateway, key = make_gateway(key_flags=("--rpm", "1"))
    client = sdk(gateway, key)
    client.models.list_language_models()
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.GetCompletionChunk(chat_pb2.GetCompletionsRequest(model=MODEL), metadata=(
                ("authorization", "Bearer " + key),)).next()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.details().startswith("rate limit reached for this key (1 requests per minute); retry in ")
    trailers = dict(e.value.trailing_metadata())
    assert int(trailers["retry-after"]) > 0 and trailers["x-ratelimit-limit-requests"] == "1"


def test_upstream_error_mid_stream_reaches_the_sdk_with_its_text(gateway, key):
    chat = sdk(gateway, key, **{"x-mock-scenario": "error_mid_stream"}).chat.create(model=MODEL)
    chat.append(user(STORY_PROMPT))
    seen = []
    with pytest.raises(grpc.RpcError) as e:
        for _r, chunk in chat.stream():
            seen.append(chunk.content)
    assert seen == ["Once", " upon", " a time"]
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert e.value.details() == "The service encountered an unexpected error while generating the response."


def test_upstream_status_passes_through_with_its_key_scrubbed(gateway, key, mock):
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"status": 429, "error": "slow down, xai-test-upstream-key-0123456789 is over its "
                             "rate", "retry_after": 3}, times=1)
    client = sdk(gateway, key, **{"x-mock-test-id": test_id})
    chat = client.chat.create(model=MODEL)
    chat.append(user(STORY_PROMPT))
    with pytest.raises(grpc.RpcError) as e:
        chat.sample()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.details() == "slow down, [redacted] is over its rate"


def test_cancel_mid_stream_cancels_the_upstream_call(gateway, key, mock):
    test_id = uuid.uuid4().hex
    with grpc.insecure_channel(gateway.grpc) as channel:
        call = chat_pb2_grpc.ChatStub(channel).GetCompletionChunk(
            chat_pb2.GetCompletionsRequest(model=MODEL, messages=[chat_pb2.Message(
                role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text=STORY_PROMPT)])]),
            metadata=(("authorization", "Bearer " + key), ("x-mock-scenario", "stall"),
                      ("x-mock-test-id", test_id)))
        first = next(call)
        assert first.outputs[0].delta.content == "Once"
        call.cancel()
        entry = mock.wait_ended(test_id=test_id, timeout=10)
    assert entry["ended"] == "client_closed"  # the stall (600 s) ended when the client left


def test_deadline_passes_through(gateway, key, mock):
    test_id = uuid.uuid4().hex
    with grpc.insecure_channel(gateway.grpc) as channel:
        with pytest.raises(grpc.RpcError) as e:
            chat_pb2_grpc.ChatStub(channel).GetCompletion(
                chat_pb2.GetCompletionsRequest(model=MODEL, messages=[chat_pb2.Message(
                    role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text=STORY_PROMPT)])]),
                metadata=(("authorization", "Bearer " + key), ("x-mock-scenario", "stall"),
                          ("x-mock-test-id", test_id)), timeout=1.0)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    entry = mock.wait_ended(test_id=test_id, timeout=10)
    assert entry["ended"] == "client_closed"
    # The client's deadline went upstream with the call (without it: none, or total_timeout's 600 s).
    # gRPC's grpc-timeout header may round a deadline up as it encodes it (grpc core's
    # timeout_encoding.h), so what the mock reads can be a few ms over the client's second.
    assert 0 < entry["deadline_s"] < 1.5


def test_stored_completion_ids_belong_to_their_key(make_gateway, tmp_path):
    from tests import servers
    gateway, key = make_gateway()
    other = servers.add_key(gateway.argv[gateway.argv.index("--keys-file") + 1], "other")
    chat = sdk(gateway, key).chat.create(model=MODEL, store_messages=True)
    chat.append(user(STORY_PROMPT))
    response = chat.sample()
    upstream_id, _, tag = response.id.rpartition(".")
    assert upstream_id.startswith("chatcmpl-mock-") and len(tag) == 26
    assert sdk(gateway, key).chat.get_stored_completion(response.id)[0].content == response.content
    for client, given in ((sdk(gateway, other), response.id), (sdk(gateway, key), upstream_id)):
        with pytest.raises(grpc.RpcError) as e:
            client.chat.get_stored_completion(given)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert e.value.details() == "no such stored completion: it does not exist, or belongs to another key"


def test_access_log_metrics_and_usage(make_gateway):
    gateway, key = make_gateway({"admin_key": "admin-key-for-grpc-tests"})
    chat = sdk(gateway, key, **{"x-mock-scenario": "story", "x-request-id": "grpc-req-1"}).chat.create(model=MODEL)
    chat.append(user(STORY_PROMPT))
    list(chat.stream())
    from tests.servers import wait_until
    # Recorded when the server sees the call end, which may be just after the client saw its last message.
    usage = wait_until(lambda: requests.get(gateway.url + "/admin/usage", timeout=10, headers={
        "Authorization": "Bearer admin-key-for-grpc-tests"}).json()["keys"].get("k"), timeout=10)
    assert (usage["requests"], usage["streams"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 1, 14, 20)
    metrics = requests.get(gateway.url + "/metrics", timeout=10).text
    assert 'tornado_grok_requests_total{endpoint="/xai_api.Chat/GetCompletionChunk",status="OK"} 1.0' in metrics
    assert "tornado_grok_time_to_first_token_seconds_count 1.0" in metrics
    assert 'tornado_grok_streams_total{ended="completed"} 1.0' in metrics
    line = json.loads(wait_until(lambda: next((l for l in gateway.stderr.splitlines() if '"grpc-req-1"' in l), None)))
    assert {k: line[k] for k in ("method", "path", "status", "key", "model", "ended", "stream", "events")} == {
        "method": "GRPC", "path": "/xai_api.Chat/GetCompletionChunk", "status": "OK", "key": "k", "model": MODEL,
        "ended": "completed", "stream": True, "events": 22}
    assert line["usage"] == {"prompt_tokens": 14, "completion_tokens": 20, "total_tokens": 34}
    assert line["ttft_ms"] >= 0


def test_deferred_ids_belong_to_their_key_and_are_charged_once(make_gateway):
    from tests import servers
    gateway, key = make_gateway({"admin_key": "admin-key-for-grpc-tests"})
    other = servers.add_key(gateway.argv[gateway.argv.index("--keys-file") + 1], "other")
    chat = sdk(gateway, key).chat.create(model=MODEL)
    chat.append(user(STORY_PROMPT))
    response = chat.defer(timeout=datetime.timedelta(seconds=30), interval=datetime.timedelta(milliseconds=10))
    assert response.content.startswith("Deferred answer for deferred_mock_")
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        started = stub.StartDeferredCompletion(chat_pb2.GetCompletionsRequest(model=MODEL, messages=[
            chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="hi")])]),
            metadata=(("authorization", "Bearer " + key),))
        upstream_id, _, tag = started.request_id.rpartition(".")
        assert upstream_id.startswith("deferred_mock_") and len(tag) == 26
        fetch = lambda given, k: stub.GetDeferredCompletion(deferred_pb2.GetDeferredRequest(request_id=given),
                                                            metadata=(("authorization", "Bearer " + k),))
        for _ in range(2):  # fetched twice: its usage is charged once
            assert fetch(started.request_id, key).status == deferred_pb2.DONE
        for given, k in ((started.request_id, other), (upstream_id, key)):
            with pytest.raises(grpc.RpcError) as e:
                fetch(given, k)
            assert (e.value.code(), e.value.details()) == (
                grpc.StatusCode.NOT_FOUND, "no such deferred completion: it does not exist, or belongs to another key")
    usage = requests.get(gateway.url + "/admin/usage", timeout=10,
                         headers={"Authorization": "Bearer admin-key-for-grpc-tests"}).json()["keys"]["k"]
    assert usage["prompt_tokens"] == 5 * 2  # the deferred answer (chat.defer's) and this one, once each


def test_embed_and_sample_with_xais_generated_stubs(gateway, key):
    """The services xai-sdk has no client for, called with the stubs it ships."""
    from xai_sdk.proto import embed_pb2, embed_pb2_grpc, sample_pb2, sample_pb2_grpc
    metadata = (("authorization", "Bearer " + key),)
    with grpc.insecure_channel(gateway.grpc) as channel:
        embedded = embed_pb2_grpc.EmbedderStub(channel).Embed(embed_pb2.EmbedRequest(
            model="v1", input=[embed_pb2.EmbedInput(string="hello"), embed_pb2.EmbedInput(string="world")]),
            metadata=metadata)
        sampled = sample_pb2_grpc.SampleStub(channel).SampleText(
            sample_pb2.SampleTextRequest(model=MODEL, prompt=["Once"]), metadata=metadata)
        streamed = list(sample_pb2_grpc.SampleStub(channel).SampleTextStreaming(
            sample_pb2.SampleTextRequest(model=MODEL, prompt=["Once"]), metadata=metadata))
    assert [len(e.embeddings[0].float_array) for e in embedded.embeddings] == [8, 8]
    assert embedded.usage.num_text_embeddings == 2
    assert sampled.choices[0].text == "Mock sample for: Once" and sampled.usage.total_tokens == 7
    assert [m.choices[0].text for m in streamed] == ["Mock sample for: Once"]


def test_tokens_per_minute_count_the_usage_a_stream_carried(make_gateway):
    from tests.servers import wait_until
    gateway, key = make_gateway(key_flags=("--tpm", "30"))
    client = sdk(gateway, key, **{"x-mock-scenario": "story"})
    chat = client.chat.create(model=MODEL)
    chat.append(user(STORY_PROMPT))
    assert list(chat.stream())[-1][0].usage.total_tokens == 34  # over the key's 30 a minute

    def refused():
        try:
            client.models.list_language_models()
        except grpc.RpcError as e:
            return e
        return None

    e = wait_until(refused, timeout=10)  # charged when the call's end is recorded, right after it
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.details().startswith("token rate limit reached for this key (30 tokens per minute); retry in ")


def test_the_connection_cap_counts_open_grpc_calls(make_gateway):
    gateway, key = make_gateway({"max_connections": 1})
    metadata = (("authorization", "Bearer " + key), ("x-mock-scenario", "stall"))
    with grpc.insecure_channel(gateway.grpc) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        held = stub.GetCompletionChunk(chat_pb2.GetCompletionsRequest(model=MODEL, messages=[chat_pb2.Message(
            role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="hold")])]), metadata=metadata)
        next(held)
        with pytest.raises(grpc.RpcError) as e:
            models_pb2_grpc.ModelsStub(channel).ListLanguageModels(
                empty_pb2.Empty(), metadata=metadata, wait_for_ready=False, timeout=10)
        held.cancel()
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE,
                                                   "the gateway is at capacity; retry shortly")


def test_mock_faults_reach_the_sdk(gateway, key, mock):
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"disconnect_after": 2}, times=1)
    chat = sdk(gateway, key, **{"x-mock-scenario": "story", "x-mock-test-id": test_id}).chat.create(model=MODEL)
    chat.append(user(STORY_PROMPT))
    seen = []
    with pytest.raises(grpc.RpcError) as e:
        for _r, chunk in chat.stream():
            seen.append(chunk.content)
    assert seen == ["Once", " upon"]
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE,
                                                   "mock fault: the connection was dropped")
    assert mock.wait_ended(test_id=test_id)["ended"] == "fault"


def test_a_stored_completion_can_be_deleted_by_its_key(make_gateway):
    gateway, key = make_gateway()
    client = sdk(gateway, key)
    chat = client.chat.create(model=MODEL, store_messages=True)
    chat.append(user("Remember this"))
    response = chat.sample()
    assert client.chat.delete_stored_completion(response.id) == response.id
    with pytest.raises(grpc.RpcError) as e:
        client.chat.get_stored_completion(response.id)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_request_id_and_limits_in_the_initial_metadata(gateway, key, mock):
    test_id = uuid.uuid4().hex
    with grpc.insecure_channel(gateway.grpc) as channel:
        _answer, call = chat_pb2_grpc.ChatStub(channel).GetCompletion.with_call(
            chat_pb2.GetCompletionsRequest(model=MODEL, messages=[chat_pb2.Message(
                role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="hi")])]),
            metadata=(("authorization", "Bearer " + key), ("x-request-id", "my-req-42"),
                      ("x-mock-test-id", test_id)))
    initial = dict(call.initial_metadata())
    assert initial["x-request-id"] == "my-req-42"
    assert initial["x-ratelimit-limit-requests"] == "600"  # the default limit, as the HTTP headers say
    assert mock.wait_ended(test_id=test_id)["headers"]["x-request-id"] == "my-req-42"  # sent upstream too
