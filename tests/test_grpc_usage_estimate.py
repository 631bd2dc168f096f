"""A gRPC stream that ends without usage (the client cancels it before the last message, which
carries the usage) is charged an estimate, marked as one, as an HTTP stream is (tornado_grok/usage.py,
grpc_relay.estimate_usage): /admin/usage counts it under estimated_requests, and the access log line
says usage_estimated."""

import grpc
import requests

from tests import hardening_helpers as hh
from tests.servers import wait_until
from xai_sdk.proto import chat_pb2, chat_pb2_grpc

ADMIN = "admin-" + "g" * 24
PROMPT = "Write a short story about a space adventure"


def test_a_cancelled_grpc_stream_is_charged_an_estimate(make_gateway):
    gateway, key = make_gateway({"admin_key": ADMIN})
    request = chat_pb2.GetCompletionsRequest(model="grok-4.20-non-reasoning", messages=[chat_pb2.Message(
        role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text=PROMPT)])])
    with grpc.insecure_channel(gateway.grpc) as channel:
        call = chat_pb2_grpc.ChatStub(channel).GetCompletionChunk(
            request, metadata=(("authorization", "Bearer " + key), ("x-mock-scenario", "stall")))
        first = next(call)
        assert first.outputs[0].delta.content == "Once"
        call.cancel()

    def totals():
        return requests.get(gateway.url + "/admin/usage", headers=hh.auth(ADMIN), timeout=10).json()["keys"].get("k")

    wait_until(lambda: totals() is not None and totals()["requests"] == 1, timeout=10)
    t = totals()
    assert t["estimated_requests"] == 1
    # The prompt's request message at 4 bytes a token. The output: the text the gateway relayed before
    # the cancel reached it, at 4 bytes a token: "Once" (1 token) up to the recording's three chunks
    # before its stall, "Once upon a time," (17 bytes, 5 tokens).
    prompt = -(-len(request.SerializeToString()) // 4)
    assert t["prompt_tokens"] == prompt and t["completion_tokens"] in (1, 3, 5)
    assert t["estimated_tokens"] == t["prompt_tokens"] + t["completion_tokens"]
    line = wait_until(lambda: next((l for l in hh.access_lines(gateway) if l.get("method") == "GRPC"), None), timeout=10)
    assert line["usage_estimated"] is True and line["ended"] == "client_gone"
