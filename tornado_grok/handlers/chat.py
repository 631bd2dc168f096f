"""POST /api/v1/chat/completions: streamed as SSE, or returned whole; vision requests fall back."""

from .. import validate
from ..dialects import ChatDialect
from ..ownership import DEFERRED
from ..relay import StreamRelay
from . import streams
from .base import APIHandler, dumps
from .fallback import answer_whole


class ChatCompletionsHandler(APIHandler):
    """OpenAI-compatible chat completions relayed to the upstream's /chat/completions."""

    @staticmethod
    def answers_sse(body: dict, config) -> bool:
        if body.get("stream") is not True:
            return False
        return config.stream_fallback_format == "sse" or not validate.has_image(body)

    async def post(self) -> None:
        body = await self.begin()
        validate.chat(body)
        asked = body["model"]
        sent = self.config.aliases.get(asked, asked)
        body["model"] = sent
        self.log_fields["model"] = asked
        if validate.has_image(body):
            await answer_whole(self, body, asked, streamed=body.get("stream") is True)
        elif self.wants_sse:
            await self.stream(body, asked, sent)
        else:
            result = await self.fetch_whole("POST", "/chat/completions", body)
            if isinstance(result, dict) and "model" in result:
                result["model"] = asked
            if body.get("deferred") is True and isinstance(result, dict) and "request_id" in result:
                # A deferred request's id is bound to this key (ownership.py): only it can fetch the result.
                result["request_id"] = self.owner().issue(DEFERRED, result["request_id"])
            self.account(result.get("usage") if isinstance(result, dict) else None, "completed")
            self.write_json(result)

    async def stream(self, body: dict, asked: str, sent: str) -> None:
        options = body.get("stream_options") or {}
        client_wants_usage = options.get("include_usage") is True
        # Usage is always asked for, for accounting; a client that did not ask does not get the chunk.
        body["stream_options"] = dict(options, include_usage=True)
        dialect = ChatDialect(drop_usage=not client_wants_usage,
                              openai_errors=self.config.sse_error_format == "openai")
        if streams.wants_resumable(self):
            await streams.start(self, dialect, asked, sent, dumps(body))
            return
        self.relay = relay = StreamRelay(self, self.gateway, asked, sent, dialect)
        await relay.run(dumps(body), self.forward_headers())


default_handlers = [
    (r"/api/v1/chat/completions", ChatCompletionsHandler),
]
