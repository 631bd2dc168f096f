"""GET /api/v1/models and /api/v1/models/{id}: the upstream's list plus the gateway's aliases."""

import time

from .. import validate
from ..upstream import join_path
from .base import APIHandler


class ModelsHandler(APIHandler):
    """Lists models; an alias appears as a model of its own, answering for its target."""

    async def get(self, model_id: str | None = None) -> None:
        await self.admit()
        aliases = self.config.aliases
        if model_id is None:
            result = await self.fetch_whole("GET", "/models")
            data = result.get("data") if isinstance(result, dict) else None
            if isinstance(data, list):
                known = {m.get("id") for m in data if isinstance(m, dict)}
                for alias, target in sorted(aliases.items()):
                    if alias not in known:
                        data.append({"id": alias, "object": "model", "created": int(time.time()),
                                     "owned_by": "tornado_grok (alias of %s)" % target})
        else:
            # Tornado has already decoded the path parameter (%2f is '/' here): check what it became.
            validate.path_id(model_id, "the model id in the path")
            target = validate.path_id(aliases.get(model_id, model_id), "the model id in the path")
            result = await self.fetch_whole("GET", join_path("models", target))
            if isinstance(result, dict) and target != model_id:
                result["id"] = model_id
        self.account(None, "completed")
        self.write_json(result)


default_handlers = [
    (r"/api/v1/models", ModelsHandler),
    (r"/api/v1/models/([^/]+)", ModelsHandler),
]
