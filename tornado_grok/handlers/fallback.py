"""Stream fallback: requests the gateway does not stream are answered whole, with X-Stream-Fallback."""

from .. import response_failures, sse
from .base import APIHandler, dumps


async def answer_whole(handler: APIHandler, body: dict, asked: str, streamed: bool) -> None:
    """Sends a chat body upstream with stream false and writes the complete chat.completion.

    With `stream_fallback_format = "sse"` a client that asked to stream gets the same answer as one
    chat.completion.chunk event and [DONE], which the OpenAI SDK can read; by default it is JSON.
    """
    as_sse = streamed and handler.config.stream_fallback_format == "sse"
    handler.wants_sse = as_sse
    if streamed:
        handler.set_sticky_header("X-Stream-Fallback", "true")
    body["stream"] = False
    body.pop("stream_options", None)
    result = await handler.fetch_whole("POST", "/chat/completions", body)
    if isinstance(result, dict) and "model" in result:
        result["model"] = asked
    handler.account(result.get("usage") if isinstance(result, dict) else None, "completed")
    if as_sse:
        handler.set_sse_headers()
        handler.finish(sse.data_event(dumps(as_chunk(result))) + sse.DONE)
    else:
        handler.write_json(result)


def as_chunk(completion: dict) -> dict:
    """A complete chat.completion rewritten as the single chat.completion.chunk that carries it."""
    choices = []
    for i, choice in enumerate(completion.get("choices") or []):
        message = choice.get("message") or {}
        delta = {k: message[k] for k in ("role", "content", "reasoning_content", "tool_calls", "refusal")
                 if message.get(k) is not None}
        choices.append({"index": choice.get("index", i), "delta": delta,
                        "finish_reason": choice.get("finish_reason")})
    chunk = {"id": completion.get("id"), "object": "chat.completion.chunk",
             "created": completion.get("created"), "model": completion.get("model"), "choices": choices}
    if completion.get("usage") is not None:
        chunk["usage"] = completion["usage"]
    return chunk


async def answer_response_whole(handler: APIHandler, body: dict, asked: str, streamed: bool) -> None:
    """The Responses API's fallback: a request with an input_image is sent upstream with stream
    false and the complete Response object is written as JSON, with X-Stream-Fallback when the
    client asked to stream. With `stream_fallback_format = "sse"` that client gets the same answer
    as one Responses event sequence (response.created ... response.completed) that the SDKs read.
    """
    as_sse = streamed and handler.config.stream_fallback_format == "sse"
    if streamed:
        handler.set_sticky_header("X-Stream-Fallback", "true")
    body["stream"] = False
    result = response_failures.scrub_body(await handler.fetch_whole("POST", "/responses", body),
                                          handler.gateway.upstream.secrets)
    if isinstance(result, dict) and "model" in result:
        result["model"] = asked
    handler.owner().issue_response(result)
    handler.account(result.get("usage") if isinstance(result, dict) else None, "completed")
    if as_sse and isinstance(result, dict):
        handler.set_sse_headers()
        handler.finish(b"".join(as_response_events(result)))
    else:
        handler.write_json(result)


def as_response_events(response: dict) -> list:
    """A complete Response object as the event sequence a Responses stream of it would have been:
    response.created, response.in_progress, each output item added (a message's text as one
    output_text delta) and done, then the terminal event (by the response's status)."""
    events = []

    def emit(kind: str, **fields) -> None:
        fields["type"] = kind
        fields["sequence_number"] = len(events)
        events.append(b"event: " + kind.encode() + b"\ndata: " + dumps(fields) + b"\n\n")

    start = dict(response, status="in_progress", output=[], usage=None)
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    for index, item in enumerate(response.get("output") or []):
        if not isinstance(item, dict):
            continue
        if item.get("type") != "message":
            emit("response.output_item.added", output_index=index, item=item)
            emit("response.output_item.done", output_index=index, item=item)
            continue
        item_id = item.get("id")
        emit("response.output_item.added", output_index=index,
             item=dict(item, status="in_progress", content=[]))
        for part_index, part in enumerate(item.get("content") or []):
            common = {"item_id": item_id, "output_index": index, "content_index": part_index}
            if not isinstance(part, dict) or part.get("type") != "output_text":
                emit("response.content_part.added", part=part, **common)
                emit("response.content_part.done", part=part, **common)
                continue
            text = part.get("text") or ""
            emit("response.content_part.added", part=dict(part, text="", annotations=[]), **common)
            emit("response.output_text.delta", delta=text, logprobs=[], **common)
            emit("response.output_text.done", text=text, logprobs=[], **common)
            emit("response.content_part.done", part=part, **common)
        emit("response.output_item.done", output_index=index, item=item)
    status = response.get("status")
    terminal = {"incomplete": "response.incomplete", "failed": "response.failed"}.get(status, "response.completed")
    emit(terminal, response=response)
    return events
