"""POST /api/v1/vision/analyze: one image and a prompt, answered whole by a vision model."""

from .. import validate
from .base import APIHandler
from .fallback import answer_whole


class VisionAnalyzeHandler(APIHandler):
    """Builds a one-message chat request with the image and the prompt; never streams."""

    @staticmethod
    def answers_sse(body: dict, config) -> bool:
        return body.get("stream") is True and config.stream_fallback_format == "sse"

    async def post(self) -> None:
        body = await self.begin()
        streamed = validate.stream_flag(body)
        url = validate.image_url(body.get("image_url"), self.config.max_image_bytes)
        prompt = validate.need_string(body, "prompt")
        model = validate.need_string(body, "model", required=False) or self.config.vision_model
        detail = validate.choice(body, "detail", ("auto", "low", "high"))
        max_tokens = validate.number(body, "max_tokens", int, 1, 1_000_000)
        temperature = validate.number(body, "temperature", (int, float), 0, 2)
        image = {"url": url}
        if detail:
            image["detail"] = detail
        chat = {
            "model": self.config.aliases.get(model, model),
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": image},
                {"type": "text", "text": prompt},
            ]}],
        }
        if max_tokens is not None:
            chat["max_tokens"] = max_tokens
        if temperature is not None:
            chat["temperature"] = temperature
        self.log_fields["model"] = model
        await answer_whole(self, chat, model, streamed)


default_handlers = [
    (r"/api/v1/vision/analyze", VisionAnalyzeHandler),
]
