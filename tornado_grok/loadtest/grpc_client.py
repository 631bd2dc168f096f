"""--api grpc: xAI's gRPC chat stream (GetCompletionChunk, what xai-sdk's `chat.stream()` calls) as
the load: the same Result per request, so TTFT, chunk gaps, tokens per second and goodput are
measured as for HTTP.

One grpc.aio channel (one HTTP/2 connection, every stream multiplexed on it) per target. A message
with content or reasoning content is a content event (its arrival time counts for TTFT and gaps); the
tokens are the last message's usage.completion_tokens. A non-OK status ends the request as
`http_error` (status: the gRPC code's name); a stream that ends OK without a finish reason,
`no_done`. The generated classes are xai-sdk's, loaded as the gateway loads them (xai_proto).
"""

import asyncio
import time
from urllib.parse import urlsplit

import grpc

perf = time.perf_counter
METHOD = "/xai_api.Chat/GetCompletionChunk"
DEFAULT_URL = "grpc://127.0.0.1:8001"


class GrpcTarget:
    """One gRPC endpoint (grpc://host:port, grpcs:// for TLS) and the request every load call sends."""

    def __init__(self, url, key=None, model="bench", prompt="chunks=20 delay=10 size=8", stream=True,
                 timeout=60.0, connect_timeout=10.0, api="grpc", headers=(), extra_body=None,
                 expect_chunks=None, keep_text=False):
        from ..xai_proto import chat_pb2
        from .client import _resolve
        u = urlsplit(url)
        if u.scheme not in ("grpc", "grpcs") or not u.hostname or not u.port:
            raise ValueError(f"--api grpc needs a grpc://host:port (or grpcs://) URL, not {url!r}")
        if extra_body:
            raise ValueError("--extra is not supported with --api grpc")
        self.chat_pb2 = chat_pb2
        self.url, self.host, self.port = url, u.hostname, u.port
        self.path = METHOD  # the report's endpoint: host:port/xai_api.Chat/GetCompletionChunk
        self.address = _resolve(self.host, self.port)
        self.tls = u.scheme == "grpcs"
        self.stream, self.timeout, self.connect_timeout = True, timeout, min(connect_timeout, timeout)
        self.api, self.model, self.expect_chunks, self.keep_text = api, model, expect_chunks, keep_text
        self.metadata = ((("authorization", "Bearer " + key),) if key else ()) + tuple(
            (k.lower(), v) for k, v in headers)
        self.request_bytes = self.build([{"role": "user", "content": prompt}])

    def build(self, messages, max_tokens=None):
        """The serialized GetCompletionsRequest for these messages."""
        pb = self.chat_pb2
        roles = {"user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT, "system": pb.ROLE_SYSTEM}
        request = pb.GetCompletionsRequest(model=self.model, messages=[
            pb.Message(role=roles.get(m["role"], pb.ROLE_USER), content=[pb.Content(text=m["content"])])
            for m in messages])
        if max_tokens is not None:
            request.max_tokens = max_tokens
        return request.SerializeToString()


class GrpcClient:
    """Runs GetCompletionChunk calls against one GrpcTarget on one channel (the Client interface)."""

    def __init__(self, target, rec, connect_limit=0):
        self.target, self.rec = target, rec
        address = f"{target.host}:{target.port}" if ":" not in target.host else f"[{target.host}]:{target.port}"
        options = [("grpc.max_receive_message_length", 20 << 20)]
        self.channel = (grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(), options=options)
                        if target.tls else grpc.aio.insecure_channel(address, options=options))
        self.call = self.channel.unary_stream(METHOD)  # bytes in, bytes out: parsed here
        self.idle = []  # the HTTP client's kept-alive connections: none here (one channel)
        self.active = set()
        self.connections_opened = 0  # 1 once the first call is made (the channel connects then)
        self.stopping = False

    async def request(self, conv=None, request_bytes=None):
        """One streamed call, start to end; always returns a finished Result."""
        from .client import Result
        rec, t = self.rec, self.target
        res = Result()
        if conv is not None:
            res.conv, res.turn = conv.id, conv.turn + 1
        if t.keep_text:
            res.text = []
        rec.started_one()
        if not self.connections_opened:
            self.connections_opened = 1
        call = self.call(request_bytes or t.request_bytes, metadata=t.metadata, timeout=t.timeout)
        self.active.add(call)
        try:
            await self._read(call, res)
        except asyncio.CancelledError:
            call.cancel()
            res.end = res.end or "cancelled"
            raise
        finally:
            self.active.discard(call)
            if not res.t_end:
                res.t_end = perf()
            if res.end is None:
                res.end = "cancelled"
            rec.finished_one(res)
        return res

    async def _read(self, call, res) -> None:
        parse = self.target.chat_pb2.GetChatCompletionChunk.FromString
        rec, last, finished = self.rec, None, False
        try:
            async for raw in call:
                now = perf()
                if not res.t_headers:
                    res.t_headers = now
                last = parse(raw)
                for output in last.outputs:
                    delta = output.delta
                    if delta.content or delta.reasoning_content:
                        rec.content_event(res, now)
                        if res.text is not None and delta.content:
                            res.text.append(delta.content)
                    finished = finished or output.finish_reason != 0
        except grpc.aio.AioRpcError as e:
            res.t_end = perf()
            code = e.code()
            res.status = code.name
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                res.end, res.detail = "timeout", f"no end after {self.target.timeout}s"
            elif code == grpc.StatusCode.CANCELLED:
                res.end = "cancelled"
            elif code == grpc.StatusCode.UNAVAILABLE and last is None:
                res.end, res.detail = "connect_error", e.details()
            elif last is not None:
                res.end, res.error = "error_event", f"{code.name}: {e.details()}"
            else:
                res.end, res.detail = "http_error", f"{code.name}: {e.details()}"
            return
        res.t_end = perf()
        res.status = 200
        if last is not None and last.usage.completion_tokens:
            res.tokens = last.usage.completion_tokens
        res.done = finished
        res.end = "done" if finished else "no_done"
        expect = self.target.expect_chunks
        if expect is not None and res.end == "done" and res.chunks != expect:
            res.end, res.detail = "content_mismatch", f"{res.chunks} content chunks, {expect} expected"

    def abort_all(self, end="cancelled"):
        self.stopping = True
        for call in list(self.active):
            call.cancel()

    def close(self):
        asyncio.ensure_future(self.channel.close())
