"""The rest of xAI's REST surface, answered deterministically: deferred completions, tokenize-text,
embeddings, image edits and the language / image-generation / embedding model lists.

Every answer is a function of the request alone (no clocks, no randomness), so a test can compute
what it expects. Faults and error scenarios apply as on the models list (ApiHandler.answer_or_fault).
"""

import base64
import hashlib
import re
import struct
import zlib

from mock_upstream import faults
from mock_upstream.handlers.base import ApiHandler, XaiError
from mock_upstream.handlers.images import PNG_B64
from mock_upstream.plan import Plan, dumps

CREATED = 1733961600

LANGUAGE_MODELS = [
    {"id": "grok-4.20-non-reasoning", "fingerprint": "fp_mock420", "created": 1773014400, "object": "model",
     "owned_by": "xai", "version": "4.20", "input_modalities": ["text", "image"], "output_modalities": ["text"],
     "prompt_text_token_price": 2000, "cached_prompt_text_token_price": 500, "prompt_image_token_price": 2000,
     "completion_text_token_price": 5000, "search_price": 0, "aliases": []},
    {"id": "grok-4.3", "fingerprint": "fp_mock43", "created": 1777593600, "object": "model", "owned_by": "xai",
     "version": "4.3", "input_modalities": ["text", "image"], "output_modalities": ["text"],
     "prompt_text_token_price": 30000, "cached_prompt_text_token_price": 7500, "prompt_image_token_price": 30000,
     "completion_text_token_price": 150000, "search_price": 0, "aliases": ["grok-latest"]},
]
IMAGE_MODELS = [
    {"id": "grok-2-image-1212", "fingerprint": "fp_mockimg", "max_prompt_length": 1024, "created": CREATED,
     "object": "model", "owned_by": "xai", "version": "1.0", "input_modalities": ["text"],
     "output_modalities": ["image"], "image_price": 700000, "aliases": ["grok-2-image"]},
    {"id": "grok-imagine-image", "fingerprint": "fp_mockimagine", "max_prompt_length": 1024, "created": CREATED,
     "object": "model", "owned_by": "xai", "version": "1.0", "input_modalities": ["text", "image"],
     "output_modalities": ["image"], "image_price": 200000, "aliases": []},
]
EMBEDDING_MODELS = [
    {"id": "v1", "fingerprint": "fp_mockemb", "created": CREATED, "object": "model", "owned_by": "xai",
     "version": "1", "input_modalities": ["text"], "prompt_text_token_price": 100,
     "prompt_image_token_price": 0, "aliases": []},
]
DIMENSIONS = 8  # of the mock's embeddings (a `dimensions` field asks for fewer)
_TOKEN = re.compile(r"\s*\S+|\s+")


class RestHandler(ApiHandler):
    """answer(): the JSON body (or an empty one) with a status, after the request's faults."""

    async def answer(self, obj, status: int = 200) -> None:
        if status == 200:
            return await self.answer_or_fault(dumps(obj))
        fault = self.mock.faults.take(self.test_id)
        await self.play(faults.apply(Plan(status, {}, False, dumps(obj) if obj is not None else b""), fault))


def _find(models: list, model_id: str, kind: str) -> dict:
    for model in models:
        if model["id"] == model_id or model_id in model["aliases"]:
            return model
    raise XaiError(404, f"The {kind} {model_id} does not exist or your team does not have access to it.")


def _model_list(models: list, kind: str):
    class ListHandler(RestHandler):
        async def get(self):
            await self.answer({"models": models})

    class OneHandler(RestHandler):
        async def get(self, model_id):
            await self.answer(_find(models, model_id, kind))

    return ListHandler, OneHandler


class DeferredHandler(RestHandler):
    """GET /v1/chat/deferred-completion/{id}: ids starting "pending" answer 202 (not ready), ids
    starting "missing" 404; any other id its finished chat.completion."""

    async def get(self, request_id):
        if request_id.startswith("pending"):
            return await self.answer(None, 202)
        if request_id.startswith("missing"):
            raise XaiError(404, f"No deferred completion with request id {request_id}")
        text = f"Deferred answer for {request_id}."
        await self.answer({
            "id": request_id, "object": "chat.completion", "created": CREATED, "model": "grok-4.20-non-reasoning",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()),
                      "total_tokens": 5 + len(text.split())}})


def tokens(text: str) -> list:
    """The mock's tokenizer: a word with its leading spaces is one token; its id a CRC of it."""
    return [{"token_id": zlib.crc32(t.encode()) % 131072, "string_token": t, "token_bytes": list(t.encode())}
            for t in _TOKEN.findall(text)]


class TokenizeHandler(RestHandler):
    """POST /v1/tokenize-text: {"text", "model"} -> {"token_ids": [...]}."""

    async def post(self):
        body = self.json_body()
        if not isinstance(body.get("text"), str):
            raise XaiError(400, "text must be a string")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise XaiError(400, "Missing required field: model")
        await self.answer({"token_ids": tokens(body["text"])})


def embedding(text: str, dimensions: int = DIMENSIONS) -> list:
    """A unit-free vector from the text's SHA-256, each value in [-1, 1) on a 1/128 grid (exact in float32)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i] - 128) / 128 for i in range(dimensions)]


class EmbeddingsHandler(RestHandler):
    """POST /v1/embeddings: OpenAI's shape, float or base64 (little-endian float32) vectors."""

    async def post(self):
        body = self.json_body()
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise XaiError(400, "Missing required field: model")
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            raise XaiError(400, "input must be a string or an array of strings")
        dimensions = body.get("dimensions") or DIMENSIONS
        if not isinstance(dimensions, int) or not 1 <= dimensions <= DIMENSIONS:
            raise XaiError(400, f"dimensions must be between 1 and {DIMENSIONS}")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vector = embedding(text, dimensions)
            if as_base64:
                vector = base64.b64encode(struct.pack("<%df" % len(vector), *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        count = sum(len(tokens(t)) for t in inputs)
        await self.answer({"object": "list", "model": model, "data": data,
                           "usage": {"prompt_tokens": count, "total_tokens": count}})


class ImageEditsHandler(RestHandler):
    """POST /v1/images/edits (JSON): {"prompt", "image": {"url"}, "n"?, "response_format"?}."""

    async def post(self):
        body = self.json_body()
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise XaiError(400, "prompt must be a non-empty string")
        image = body.get("image")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise XaiError(400, "image must be an object with a url")
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            raise XaiError(400, "n must be an integer between 1 and 10")
        revised = f"The image, edited: {prompt.strip()}"
        if body.get("response_format") == "b64_json":
            item = {"b64_json": PNG_B64, "revised_prompt": revised}
        else:
            item = {"url": f"{self.request.protocol}://{self.request.host}/_mock/images/0.png",
                    "revised_prompt": revised}
        await self.answer({"created": CREATED, "data": [item] * n})


LanguageModels, LanguageModel = _model_list(LANGUAGE_MODELS, "model")
ImageModels, ImageModel = _model_list(IMAGE_MODELS, "image generation model")
EmbeddingModels, EmbeddingModel = _model_list(EMBEDDING_MODELS, "embedding model")

default_handlers = [
    (r"/v1/chat/deferred-completion/([^/]+)", DeferredHandler),
    (r"/v1/tokenize-text", TokenizeHandler),
    (r"/v1/embeddings", EmbeddingsHandler),
    (r"/v1/images/edits", ImageEditsHandler),
    (r"/v1/language-models", LanguageModels),
    (r"/v1/language-models/([^/]+)", LanguageModel),
    (r"/v1/image-generation-models", ImageModels),
    (r"/v1/image-generation-models/([^/]+)", ImageModel),
    (r"/v1/embedding-models", EmbeddingModels),
    (r"/v1/embedding-models/([^/]+)", EmbeddingModel),
]
