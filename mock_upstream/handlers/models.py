"""GET /v1/models and /v1/models/{id}: a fixed list, as xAI shapes it."""

from mock_upstream.handlers.base import ApiHandler, XaiError
from mock_upstream.plan import dumps

MODELS = [
    {"id": "grok-4.20-non-reasoning", "object": "model", "created": 1773014400, "owned_by": "xai"},
    {"id": "grok-4.3", "object": "model", "created": 1777593600, "owned_by": "xai"},
    {"id": "grok-2-vision-1212", "object": "model", "created": 1733961600, "owned_by": "xai"},
    {"id": "grok-2-image-1212", "object": "model", "created": 1733961600, "owned_by": "xai"},
]


class ModelsHandler(ApiHandler):
    """The model list."""

    async def get(self):
        await self.answer_or_fault(dumps({"object": "list", "data": MODELS}))


class ModelHandler(ApiHandler):
    """One model, or 404."""

    async def get(self, model_id):
        for model in MODELS:
            if model["id"] == model_id:
                return await self.answer_or_fault(dumps(model))
        raise XaiError(404, f"The model {model_id} does not exist or your team does not have access to it.")


default_handlers = [(r"/v1/models", ModelsHandler), (r"/v1/models/(.+)", ModelHandler)]
