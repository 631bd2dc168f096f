"""POST /api/v1/images/generate (and /images/generations, the OpenAI SDK's path): never streamed."""

from .. import validate
from .base import APIHandler


class ImagesHandler(APIHandler):
    """Relays an image generation request to the upstream's /images/generations."""

    async def post(self) -> None:
        body = await self.begin()
        streamed = validate.stream_flag(body)
        validate.need_string(body, "prompt")
        model = validate.need_string(body, "model", required=False) or self.config.image_model
        validate.number(body, "n", int, 1, 10)
        validate.choice(body, "response_format", ("url", "b64_json"))
        body["model"] = self.config.aliases.get(model, model)
        body.pop("stream", None)
        self.log_fields["model"] = model
        if streamed:
            self.set_sticky_header("X-Stream-Fallback", "true")
        result = await self.fetch_whole("POST", "/images/generations", body)
        self.account(None, "completed")
        self.write_json(result)


default_handlers = [
    (r"/api/v1/images/generate", ImagesHandler),
    (r"/api/v1/images/generations", ImagesHandler),
]
