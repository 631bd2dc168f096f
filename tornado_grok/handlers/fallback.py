"""Stream fallback: requests the gateway does not stream are answered whole, with X-Stream-Fallback."""

from .. import sse
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
