"""POST /v1/images/generations (never streams) and the PNGs its URLs point at."""

import base64
import struct
import time
import zlib

from tornado.web import RequestHandler

from mock_upstream.handlers.base import ApiHandler, XaiError
from mock_upstream.plan import dumps


def tiny_png(rgba=(29, 161, 242, 255)) -> bytes:
    """A valid 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" + bytes(rgba))) + chunk(b"IEND", b"")


PNG = tiny_png()
PNG_B64 = base64.b64encode(PNG).decode()


class ImagesHandler(ApiHandler):
    """Validates like xAI (400 with {"code","error"}) and answers URLs or base64 PNGs."""

    async def post(self):
        body = self.json_body()
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise XaiError(400, "prompt must be a non-empty string")
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            raise XaiError(400, "n must be an integer between 1 and 10")
        response_format = body.get("response_format", "url")
        if response_format not in ("url", "b64_json"):
            raise XaiError(400, "response_format must be 'url' or 'b64_json'")
        model = body.get("model", "grok-2-image-1212")
        if not isinstance(model, str):
            raise XaiError(400, "model must be a string")
        data = [self.image(response_format, prompt) for _ in range(n)]
        await self.answer_or_fault(dumps({"created": int(time.time()), "data": data}))

    def image(self, response_format: str, prompt: str) -> dict:
        revised = f"A detailed, high-quality image of: {prompt.strip()}"
        if response_format == "b64_json":
            return {"b64_json": PNG_B64, "revised_prompt": revised}
        number = self.mock.next_image()
        url = f"{self.request.protocol}://{self.request.host}/_mock/images/{number}.png"
        return {"url": url, "revised_prompt": revised}


class ImageFileHandler(RequestHandler):
    """The PNG behind every generated URL (no auth, like a CDN link)."""

    def initialize(self, mock):
        self.mock = mock

    def get(self, number):
        self.set_header("Content-Type", "image/png")
        self.finish(PNG)


default_handlers = [(r"/v1/images/generations", ImagesHandler), (r"/_mock/images/(\d+)\.png", ImageFileHandler)]
