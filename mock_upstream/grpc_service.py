"""The mock's gRPC face: xAI's public gRPC services (what `xai-sdk` calls) from the same recordings,
scenarios, faults and journal as the REST routes.

A chat call is turned into the chat body the REST handler would get (model, messages as text,
tools, `"stream"`), the scenario is selected and its Plan built and faulted exactly as for
`POST /v1/chat/completions`, and the Plan is played as protobuf messages: each recorded chunk becomes
one `GetChatCompletionChunk`, sent when its recorded delay is due. An error event mid-stream ends
the call with INTERNAL and the recorded text; a stall holds the call; a dropped connection ends it
with UNAVAILABLE; an HTTP error recording is its gRPC status (429 -> RESOURCE_EXHAUSTED, ...). A
scenario, test id or speed is picked with the same names as metadata (`x-mock-scenario`, ...).
Journal entries have method "GRPC", the method's path (`/xai_api.Chat/GetCompletionChunk`) and
`deadline_s`, the seconds left of the call's deadline when it arrived (None without one).
"""

import asyncio
import json
import time

import grpc
from google.protobuf import empty_pb2
from tornado_grok.xai_proto import (chat_pb2, deferred_pb2, embed_pb2, image_pb2, models_pb2, sample_pb2,
                           tokenize_pb2, usage_pb2)

from mock_upstream import faults, generated
from mock_upstream.handlers import rest
from mock_upstream.handlers.images import PNG_B64
from mock_upstream.journal import mask_secret
from mock_upstream.plan import DISCONNECT, STALL
from mock_upstream.scenarios import ScenarioError

# HTTP status of a recording or fault -> the gRPC status xAI's gRPC API answers with.
STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
          403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
          408: grpc.StatusCode.DEADLINE_EXCEEDED, 409: grpc.StatusCode.ABORTED,
          422: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
          501: grpc.StatusCode.UNIMPLEMENTED, 502: grpc.StatusCode.UNAVAILABLE,
          503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}
ROLES = {chat_pb2.ROLE_USER: "user", chat_pb2.ROLE_ASSISTANT: "assistant", chat_pb2.ROLE_SYSTEM: "system",
         chat_pb2.ROLE_TOOL: "tool", chat_pb2.ROLE_DEVELOPER: "developer", chat_pb2.ROLE_FUNCTION: "tool"}
FINISH = {"stop": sample_pb2.REASON_STOP, "length": sample_pb2.REASON_MAX_LEN,
          "tool_calls": sample_pb2.REASON_TOOL_CALLS, "content_filter": sample_pb2.REASON_STOP}
MODALITIES = {"text": models_pb2.TEXT, "image": models_pb2.IMAGE, "embedding": models_pb2.EMBEDDING}


def grpc_status(http_status: int) -> grpc.StatusCode:
    return STATUS.get(http_status, grpc.StatusCode.INTERNAL if http_status >= 500 else grpc.StatusCode.INVALID_ARGUMENT)


class Metadata:
    """A call's metadata as the REST code reads headers: `get(name)`, any case."""

    def __init__(self, context):
        self.values = {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}

    def get(self, name: str, default=None):
        return self.values.get(name.lower(), default)

    def public(self) -> dict:
        return {k: (mask_secret(v) if k == "authorization" else v) for k, v in self.values.items()}


class Call:
    """One gRPC call: its journal entry, key check, speed; ended once."""

    def __init__(self, mock, context, method: str, body):
        self.mock, self.context = mock, context
        self.meta = Metadata(context)
        self.test_id = self.meta.get("x-mock-test-id")
        self.arrived = time.monotonic()
        self.entry = mock.journal.add("GRPC", method, self.meta.public(), body, self.test_id)
        remaining = context.time_remaining()  # the call's deadline as it arrived (None: none)
        self.entry["deadline_s"] = round(remaining, 3) if remaining is not None and remaining < 1e9 else None
        # Every handler says how its call ended before it returns or aborts. A call that is over without
        # that is one whose client left while a message was being written: grpcio then never resumes
        # the handler (so its `except CancelledError` does not run) and, seen from here, does not
        # always report the call as cancelled either. The journal says the client left.
        context.add_done_callback(lambda _context: self.end("client_closed"))

    def end(self, how: str) -> None:
        self.mock.journal.end(self.entry, how)

    async def fail(self, code: grpc.StatusCode, message: str, how: str = "complete"):
        self.entry["status"] = code.name
        self.end(how)
        await self.context.abort(code, message)

    async def check_key(self) -> None:
        scheme, _, key = (self.meta.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            await self.fail(grpc.StatusCode.UNAUTHENTICATED, "Missing or invalid authorization metadata: "
                            "expected 'Bearer <API key>'")
        required = self.mock.options.require_key
        if required and key.strip() != required:
            await self.fail(grpc.StatusCode.UNAUTHENTICATED, "Incorrect API key provided: %s. You can obtain "
                            "an API key from https://console.x.ai." % mask_secret(key.strip()))

    def speed(self) -> float:
        value = self.meta.get("x-mock-speed")
        try:
            return self.mock.options.speed if value is None else max(0.0, float(value))
        except ValueError:
            return self.mock.options.speed

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


def chat_body(request: chat_pb2.GetCompletionsRequest, stream: bool) -> dict:
    """The REST chat body a gRPC chat request stands for (what scenarios and generators read)."""
    messages = []
    for m in request.messages:
        text = "".join(c.text for c in m.content)
        messages.append({"role": ROLES.get(m.role, "user"), "content": text})
    body = {"model": request.model, "messages": messages, "stream": stream,
            "stream_options": {"include_usage": True}}
    tools = [{"type": "function", "function": {"name": t.function.name}} for t in request.tools if t.function.name]
    if tools:
        body["tools"] = tools
    if request.max_tokens:
        body["max_tokens"] = request.max_tokens
    return body


def usage_message(usage) -> usage_pb2.SamplingUsage:
    u = usage if isinstance(usage, dict) else {}
    details = u.get("completion_tokens_details") if isinstance(u.get("completion_tokens_details"), dict) else {}
    ints = lambda v: v if isinstance(v, int) and v > 0 else 0
    return usage_pb2.SamplingUsage(prompt_tokens=ints(u.get("prompt_tokens")),
                                   completion_tokens=ints(u.get("completion_tokens")),
                                   total_tokens=ints(u.get("total_tokens")),
                                   reasoning_tokens=ints(details.get("reasoning_tokens")),
                                   prompt_text_tokens=ints(u.get("prompt_tokens")))


def _message_fields(delta: dict) -> dict:
    out = {}
    if isinstance(delta.get("content"), str):
        out["content"] = delta["content"]
    if isinstance(delta.get("reasoning_content"), str):
        out["reasoning_content"] = delta["reasoning_content"]
    if delta.get("role"):
        out["role"] = chat_pb2.ROLE_ASSISTANT
    calls = []
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        calls.append(chat_pb2.ToolCall(id=call.get("id") or "", type=chat_pb2.TOOL_CALL_TYPE_CLIENT_SIDE_TOOL,
                                       function=chat_pb2.FunctionCall(name=function.get("name") or "",
                                                                      arguments=function.get("arguments") or "")))
    if calls:
        out["tool_calls"] = calls
    return out


def _common(obj: dict) -> dict:
    out = {"id": obj.get("id") or "", "model": obj.get("model") or "",
           "system_fingerprint": obj.get("system_fingerprint") or ""}
    if isinstance(obj.get("created"), int):
        out["created"] = {"seconds": obj["created"]}
    if "usage" in obj:
        out["usage"] = usage_message(obj["usage"])
    return out


def chunk_message(obj: dict) -> chat_pb2.GetChatCompletionChunk:
    """A chat.completion.chunk (JSON) as xAI's GetChatCompletionChunk."""
    # xAI names the role in every delta: the SDK keeps the last chunk's role, and reads the content of
    # assistant outputs only.
    outputs = [chat_pb2.CompletionOutputChunk(index=c.get("index") or 0, delta=chat_pb2.Delta(**_message_fields(
                                                  dict(c.get("delta") or {}, role="assistant"))),
                                              finish_reason=FINISH.get(c.get("finish_reason"), 0))
               for c in obj.get("choices") or ()]
    return chat_pb2.GetChatCompletionChunk(outputs=outputs, **_common(obj))


def completion_message(obj: dict) -> chat_pb2.GetChatCompletionResponse:
    """A chat.completion (JSON) as xAI's GetChatCompletionResponse."""
    outputs = [chat_pb2.CompletionOutput(index=c.get("index") or 0,
                                         message=chat_pb2.CompletionMessage(**_message_fields(
                                             dict(c.get("message") or {}, role="assistant"))),
                                         finish_reason=FINISH.get(c.get("finish_reason"), 0))
               for c in obj.get("choices") or ()]
    return chat_pb2.GetChatCompletionResponse(outputs=outputs, **_common(obj))


def error_text(body: bytes) -> str:
    try:
        obj = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    return obj.get("error") if isinstance(obj, dict) and isinstance(obj.get("error"), str) else str(obj)


class ChatService:
    """xai_api.Chat: GetCompletion, GetCompletionChunk, deferred and stored completions."""

    def __init__(self, mock):
        self.mock = mock
        self.stored: dict = {}  # response id -> GetChatCompletionResponse (store_messages)

    async def plan(self, call: Call, request, stream: bool):
        body = chat_body(request, stream)
        await call.check_key()
        if not request.model:
            await call.fail(grpc.StatusCode.INVALID_ARGUMENT, "Missing required field: model")
        if not body["messages"]:
            await call.fail(grpc.StatusCode.INVALID_ARGUMENT, "messages must not be empty")
        runtime = self.mock.faults.take(call.test_id)
        try:
            scenario = self.mock.registry.select(call.meta, body, runtime.scenario if runtime else None)
        except ScenarioError as e:
            await call.fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        call.entry["scenario"] = scenario.name
        fault = faults.merge(scenario.fault, runtime)
        if scenario.recording is not None:
            plan = scenario.recording.plan(request.model, stream, True)
        elif scenario.generator == "synthetic":
            plan = generated.synthetic(body, batch=fault is None)
        elif scenario.generator == "paced":
            plan = generated.paced(body, scenario.pacing, f"chatcmpl-mock-{call.entry['seq']}")
        else:
            plan = generated.default_answer(body, f"chatcmpl-mock-{call.entry['seq']}")
        return faults.apply(plan, fault)

    async def answer_plan(self, call: Call, plan):
        """A non-stream plan: its error status, its dropped connection, or its body."""
        await call.pause(plan.slow_headers + plan.body_delay * call.speed())
        if plan.disconnect_at is not None:
            await call.pause(plan.disconnect_at)
            await call.fail(grpc.StatusCode.UNAVAILABLE, "mock fault: the connection was dropped", "fault")
        if plan.status >= 300:
            await call.fail(grpc_status(plan.status), error_text(plan.body))
        call.entry["status"] = "OK"
        return json.loads(plan.body)

    async def GetCompletion(self, request, context):
        call = Call(self.mock, context, "/xai_api.Chat/GetCompletion", chat_body(request, False))
        try:
            plan = await self.plan(call, request, False)
            obj = await self.answer_plan(call, plan) if not plan.stream else _sum(plan)
        except asyncio.CancelledError:
            call.end("client_closed")
            raise
        response = completion_message(obj)
        if request.store_messages and response.id:
            self.stored[response.id] = response
        call.end("complete")
        return response

    async def GetCompletionChunk(self, request, context):
        call = Call(self.mock, context, "/xai_api.Chat/GetCompletionChunk", chat_body(request, True))
        try:
            plan = await self.plan(call, request, True)
            if not plan.stream:
                obj = await self.answer_plan(call, plan)
                yield chunk_message(obj)
                call.end("complete")
                return
            async for message in self.play(call, plan):
                yield message
        except asyncio.CancelledError:
            call.end("client_closed")
            raise

    async def play(self, call: Call, plan):
        """The stream's steps as chunk messages, each when its recorded delay is due."""
        speed = call.speed()
        await call.pause(plan.slow_headers)
        call.entry["status"] = "OK"
        started = time.monotonic()
        drop_at = started + plan.disconnect_at if plan.disconnect_at is not None else None
        due = started
        for step in plan.steps:
            if step.delay and speed:
                due += step.delay * speed
                await call.pause(due - time.monotonic())
            if drop_at is not None and time.monotonic() >= drop_at or step.action == DISCONNECT:
                await call.fail(grpc.StatusCode.UNAVAILABLE, "mock fault: the connection was dropped", "fault")
            if step.action == STALL:
                await call.pause(step.hold)
                break
            # A step is one SSE event, or several written at once (a generator's batch): each `data:`
            # event is one message; comments (pings) and bytes a gRPC stream has no place for are not.
            for event in step.data.split(b"\n\n"):
                if not event.startswith(b"data: "):
                    continue
                if event[6:].strip() == b"[DONE]":
                    call.end("complete")
                    return
                try:
                    obj = json.loads(event[6:])
                except ValueError:
                    await call.fail(grpc.StatusCode.INTERNAL, "mock fault: a malformed chunk", "fault")
                if isinstance(obj, dict) and "error" in obj and "choices" not in obj:
                    await call.fail(grpc.StatusCode.INTERNAL, str(obj.get("error")), "fault")
                call.entry["events"] += 1
                yield chunk_message(obj)
        call.end("fault")
        await call.context.abort(grpc.StatusCode.INTERNAL, "mock fault: the stream ended before it finished")

    async def StartDeferredCompletion(self, request, context):
        call = Call(self.mock, context, "/xai_api.Chat/StartDeferredCompletion", chat_body(request, False))
        await call.check_key()
        call.end("complete")
        return deferred_pb2.StartDeferredResponse(request_id=f"deferred_mock_{call.entry['seq']}")

    async def GetDeferredCompletion(self, request, context):
        call = Call(self.mock, context, "/xai_api.Chat/GetDeferredCompletion", {"request_id": request.request_id})
        await call.check_key()
        if request.request_id.startswith("pending"):
            call.end("complete")
            return chat_pb2.GetDeferredCompletionResponse(status=deferred_pb2.PENDING)
        if request.request_id.startswith("missing"):
            await call.fail(grpc.StatusCode.NOT_FOUND, "No deferred completion with request id %s" % request.request_id)
        text = f"Deferred answer for {request.request_id}."
        obj = {"id": request.request_id, "created": rest.CREATED, "model": "grok-4.20-non-reasoning",
               "choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()),
                         "total_tokens": 5 + len(text.split())}}
        call.end("complete")
        return chat_pb2.GetDeferredCompletionResponse(status=deferred_pb2.DONE, response=completion_message(obj))

    async def GetStoredCompletion(self, request, context):
        call = Call(self.mock, context, "/xai_api.Chat/GetStoredCompletion", {"response_id": request.response_id})
        await call.check_key()
        found = self.stored.get(request.response_id)
        if found is None:
            await call.fail(grpc.StatusCode.NOT_FOUND, "No stored completion with id %s" % request.response_id)
        call.end("complete")
        return found

    async def DeleteStoredCompletion(self, request, context):
        call = Call(self.mock, context, "/xai_api.Chat/DeleteStoredCompletion", {"response_id": request.response_id})
        await call.check_key()
        if self.stored.pop(request.response_id, None) is None:
            await call.fail(grpc.StatusCode.NOT_FOUND, "No stored completion with id %s" % request.response_id)
        call.end("complete")
        return chat_pb2.DeleteStoredCompletionResponse(response_id=request.response_id)


def _sum(plan) -> dict:
    """A stream plan answered whole (a stream recording asked for without streaming)."""
    from mock_upstream.recordings import summarize_stream
    chunks = []
    for step in plan.steps:
        if step.data.startswith(b"data: {"):
            chunks.append(json.loads(step.data[6:]))
    return summarize_stream(chunks) or {}


def language_model(m: dict) -> models_pb2.LanguageModel:
    return models_pb2.LanguageModel(
        name=m["id"], aliases=m["aliases"], version=m["version"], system_fingerprint=m["fingerprint"],
        input_modalities=[MODALITIES[x] for x in m["input_modalities"]],
        output_modalities=[MODALITIES[x] for x in m["output_modalities"]],
        prompt_text_token_price=m["prompt_text_token_price"], prompt_image_token_price=m["prompt_image_token_price"],
        cached_prompt_token_price=m["cached_prompt_text_token_price"],
        completion_text_token_price=m["completion_text_token_price"], created={"seconds": m["created"]})


def image_model(m: dict) -> models_pb2.ImageGenerationModel:
    return models_pb2.ImageGenerationModel(
        name=m["id"], aliases=m["aliases"], version=m["version"], system_fingerprint=m["fingerprint"],
        input_modalities=[MODALITIES[x] for x in m["input_modalities"]],
        output_modalities=[MODALITIES[x] for x in m["output_modalities"]],
        image_price=m["image_price"], max_prompt_length=m["max_prompt_length"], created={"seconds": m["created"]})


def embedding_model(m: dict) -> models_pb2.EmbeddingModel:
    return models_pb2.EmbeddingModel(
        name=m["id"], aliases=m["aliases"], version=m["version"], system_fingerprint=m["fingerprint"],
        input_modalities=[MODALITIES[x] for x in m["input_modalities"]], output_modalities=[models_pb2.EMBEDDING],
        prompt_text_token_price=m["prompt_text_token_price"], created={"seconds": m["created"]})


class SimpleServices:
    """Models, Tokenize, Image, Embedder, Sample: deterministic answers, as the REST routes give."""

    def __init__(self, mock):
        self.mock = mock

    async def _start(self, context, method: str, body) -> Call:
        call = Call(self.mock, context, method, body)
        await call.check_key()
        runtime = self.mock.faults.take(call.test_id)
        name = call.meta.get("x-mock-scenario") or (runtime.scenario if runtime else None)
        if runtime is not None and runtime.status is not None:
            await call.fail(grpc_status(runtime.status), runtime.error or "mock fault: HTTP %d" % runtime.status)
        if name:
            try:
                scenario = self.mock.registry.get(name.strip())
            except ScenarioError as e:
                await call.fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            recording = scenario.recording
            if recording is not None and recording.status >= 400:
                plan = recording.plan("", False, False)
                await call.fail(grpc_status(plan.status), error_text(plan.body))
        call.entry["status"] = "OK"
        call.end("complete")
        return call

    def _models(kind, models, convert, list_type, label):
        async def list_models(self, request, context):
            await self._start(context, "/xai_api.Models/List%s" % kind, None)
            return list_type(models=[convert(m) for m in models])

        async def get_model(self, request, context):
            call = await self._start(context, "/xai_api.Models/Get%s" % kind[:-1], {"name": request.name})
            for m in models:
                if request.name == m["id"] or request.name in m["aliases"]:
                    return convert(m)
            call.entry["status"] = "NOT_FOUND"
            await context.abort(grpc.StatusCode.NOT_FOUND, "The %s %s does not exist or your team does not have "
                                "access to it." % (label, request.name))
        return list_models, get_model

    ListLanguageModels, GetLanguageModel = _models("LanguageModels", rest.LANGUAGE_MODELS, language_model,
                                                   models_pb2.ListLanguageModelsResponse, "model")
    ListImageGenerationModels, GetImageGenerationModel = _models(
        "ImageGenerationModels", rest.IMAGE_MODELS, image_model, models_pb2.ListImageGenerationModelsResponse,
        "image generation model")
    ListEmbeddingModels, GetEmbeddingModel = _models("EmbeddingModels", rest.EMBEDDING_MODELS, embedding_model,
                                                     models_pb2.ListEmbeddingModelsResponse, "embedding model")
    del _models

    async def TokenizeText(self, request, context):
        await self._start(context, "/xai_api.Tokenize/TokenizeText", {"text": request.text, "model": request.model})
        tokens = [tokenize_pb2.Token(token_id=t["token_id"], string_token=t["string_token"],
                                     token_bytes=bytes(t["token_bytes"])) for t in rest.tokens(request.text)]
        return tokenize_pb2.TokenizeTextResponse(tokens=tokens, model=request.model)

    async def GenerateImage(self, request, context):
        await self._start(context, "/xai_api.Image/GenerateImage", {"prompt": request.prompt, "model": request.model})
        n = request.n or 1
        if request.format == image_pb2.IMG_FORMAT_BASE64:
            images = [image_pb2.GeneratedImage(base64="data:image/png;base64," + PNG_B64) for _ in range(n)]
        else:
            images = [image_pb2.GeneratedImage(url="https://mock.invalid/_mock/images/%d.png" % self.mock.next_image())
                      for _ in range(n)]
        return image_pb2.ImageResponse(images=images, model=request.model or "grok-2-image-1212",
                                       usage=usage_pb2.SamplingUsage())

    async def Embed(self, request, context):
        await self._start(context, "/xai_api.Embedder/Embed", {"model": request.model})
        embeddings = [embed_pb2.Embedding(index=i, embeddings=[embed_pb2.FeatureVector(
            float_array=rest.embedding(item.string))]) for i, item in enumerate(request.input)]
        return embed_pb2.EmbedResponse(id="embed-mock", embeddings=embeddings, model=request.model,
                                       usage=usage_pb2.EmbeddingUsage(num_text_embeddings=len(request.input)))

    async def SampleText(self, request, context):
        await self._start(context, "/xai_api.Sample/SampleText", {"model": request.model})
        text = "Mock sample for: " + " ".join(request.prompt)[:80]
        words = len(text.split())
        return sample_pb2.SampleTextResponse(
            id="sample-mock", model=request.model, choices=[sample_pb2.SampleChoice(
                index=0, text=text, finish_reason=sample_pb2.REASON_STOP)],
            usage=usage_pb2.SamplingUsage(prompt_tokens=3, completion_tokens=words, total_tokens=3 + words))

    async def SampleTextStreaming(self, request, context):
        response = await self.SampleText(request, context)
        yield response


def handlers(mock) -> list:
    """The generic handlers of every service the mock speaks."""
    chat, simple = ChatService(mock), SimpleServices(mock)
    uu, us = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
    req = chat_pb2.GetCompletionsRequest.FromString
    out = lambda message: message.SerializeToString
    table = {
        "xai_api.Chat": {
            "GetCompletion": uu(chat.GetCompletion, req, out(chat_pb2.GetChatCompletionResponse)),
            "GetCompletionChunk": us(chat.GetCompletionChunk, req, out(chat_pb2.GetChatCompletionChunk)),
            "StartDeferredCompletion": uu(chat.StartDeferredCompletion, req, out(deferred_pb2.StartDeferredResponse)),
            "GetDeferredCompletion": uu(chat.GetDeferredCompletion, deferred_pb2.GetDeferredRequest.FromString,
                                        out(chat_pb2.GetDeferredCompletionResponse)),
            "GetStoredCompletion": uu(chat.GetStoredCompletion, chat_pb2.GetStoredCompletionRequest.FromString,
                                      out(chat_pb2.GetChatCompletionResponse)),
            "DeleteStoredCompletion": uu(chat.DeleteStoredCompletion,
                                         chat_pb2.DeleteStoredCompletionRequest.FromString,
                                         out(chat_pb2.DeleteStoredCompletionResponse)),
        },
        "xai_api.Models": {
            "ListLanguageModels": uu(simple.ListLanguageModels, empty_pb2.Empty.FromString,
                                     out(models_pb2.ListLanguageModelsResponse)),
            "ListImageGenerationModels": uu(simple.ListImageGenerationModels, empty_pb2.Empty.FromString,
                                            out(models_pb2.ListImageGenerationModelsResponse)),
            "ListEmbeddingModels": uu(simple.ListEmbeddingModels, empty_pb2.Empty.FromString,
                                      out(models_pb2.ListEmbeddingModelsResponse)),
            "GetLanguageModel": uu(simple.GetLanguageModel, models_pb2.GetModelRequest.FromString,
                                   out(models_pb2.LanguageModel)),
            "GetImageGenerationModel": uu(simple.GetImageGenerationModel, models_pb2.GetModelRequest.FromString,
                                          out(models_pb2.ImageGenerationModel)),
            "GetEmbeddingModel": uu(simple.GetEmbeddingModel, models_pb2.GetModelRequest.FromString,
                                    out(models_pb2.EmbeddingModel)),
        },
        "xai_api.Tokenize": {"TokenizeText": uu(simple.TokenizeText, tokenize_pb2.TokenizeTextRequest.FromString,
                                                out(tokenize_pb2.TokenizeTextResponse))},
        "xai_api.Image": {"GenerateImage": uu(simple.GenerateImage, image_pb2.GenerateImageRequest.FromString,
                                              out(image_pb2.ImageResponse))},
        "xai_api.Embedder": {"Embed": uu(simple.Embed, embed_pb2.EmbedRequest.FromString, out(embed_pb2.EmbedResponse))},
        "xai_api.Sample": {
            "SampleText": uu(simple.SampleText, sample_pb2.SampleTextRequest.FromString,
                             out(sample_pb2.SampleTextResponse)),
            "SampleTextStreaming": us(simple.SampleTextStreaming, sample_pb2.SampleTextRequest.FromString,
                                      out(sample_pb2.SampleTextResponse)),
        },
    }
    return [grpc.method_handlers_generic_handler(service, methods) for service, methods in table.items()]


async def start(mock, port: int = 0, host: str = "127.0.0.1") -> tuple:
    """Serves the mock's gRPC services (plaintext HTTP/2) on the running loop; returns (server, port)."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(handlers(mock))
    bound = server.add_insecure_port("%s:%d" % ("[%s]" % host if ":" in host else host, port))
    if not bound:
        raise OSError("cannot listen for gRPC on %s:%d" % (host, port))
    await server.start()
    return server, bound
