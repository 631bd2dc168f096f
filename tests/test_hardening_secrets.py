"""Secrets never leave the gateway: after a full run (every endpoint, success and failure paths, a
mock that rejects the upstream key), neither the upstream key nor a client key, nor a long piece of
either, appears in any response (status line, headers, body) or anywhere in the gateway's output."""

import json
import os
import socket


from tests import hardening_helpers as hh
from tests.mock_helpers import start_mock
from tests.servers import UPSTREAM_KEY, add_key
from tests.wire import chat_body

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
ADMIN_KEY = "admin-secret-key-9876543210-abcdef"


def pieces(secret: str, length: int = 12) -> list[str]:
    """The secret and every substring of `length` characters of it: a partial leak counts too."""
    return [secret] + [secret[i:i + length] for i in range(len(secret) - length + 1)]


def raw(gateway, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=15) as s:
        s.sendall(request)
        return hh.read_all(s)


def full_run(gateway, key: str, wrong_key: str) -> list[bytes]:
    """Every kind of request, each as raw bytes so the status line and headers are searched too."""
    good = hh.auth(key, Connection="close")
    out = []

    def send(method, path, body=None, headers=good, **extra):
        payload = json.dumps(body).encode() if body is not None else b""
        out.append(raw(gateway, hh.raw_request(method, path, dict(headers, **extra), payload)))

    for stream in (True, False):
        send("POST", "/api/v1/chat/completions", chat_body(stream=stream))
        send("POST", "/api/v1/chat/completions", chat_body(stream=stream, model="grok-4.3"))
        for scenario in ("http_401", "http_400", "http_429", "http_500", "error_mid_stream", "disconnect",
                         "malformed", "reasoning", "tool_call", "usage"):
            send("POST", "/api/v1/chat/completions", chat_body(stream=stream), **{"X-Mock-Scenario": scenario})
        send("POST", "/api/v1/vision/analyze", {"image_url": PNG, "prompt": "what is it?", "stream": stream})
        send("POST", "/api/v1/images/generate", {"prompt": "a cat", "stream": stream})
    send("GET", "/api/v1/models")
    send("GET", "/api/v1/models/grok-4-1-fast-non-reasoning")
    send("GET", "/api/v1/models", headers=hh.auth(wrong_key, Connection="close"))
    send("GET", "/api/v1/models", headers={"Authorization": "Basic " + key, "Connection": "close"})
    send("GET", "/api/v1/models", headers={"Authorization": key, "Connection": "close"})
    send("GET", "/api/v1/models", headers={"Connection": "close"})
    send("POST", "/api/v1/chat/completions", None, headers=dict(good, **{"X-Request-Id": key}))
    send("POST", "/api/v1/chat/completions", {"model": key, "messages": "nope"})
    send("DELETE", "/api/v1/chat/completions")
    send("GET", "/api/v1/nothing-here")
    send("GET", "/admin/usage", headers={"Authorization": "Bearer " + key, "Connection": "close"})
    send("GET", "/admin/usage", headers={"Authorization": "Bearer " + ADMIN_KEY, "Connection": "close"})
    for path in ("/metrics", "/readyz", "/healthz", "/debug/state"):
        send("GET", path, headers={"Connection": "close"})
    return out


def test_no_key_in_any_response_or_log(tmp_path):
    # A mock that wants another key: it answers the gateway's key with a 401 that quotes (a mask of) it.
    with start_mock("--speed", "0", "--require-key", "some-other-upstream-key") as picky, \
            start_mock("--speed", "0") as mock:
        gateways = []
        try:
            for upstream in (mock, picky):
                gateway, key = hh.start(str(tmp_path), upstream.base, {"admin_key": ADMIN_KEY})
                gateways.append(gateway)
                wrong_key = add_key(os.path.join(str(tmp_path), "spare-keys.json"), "spare-%d" % len(gateways))
                responses = full_run(gateway, key, wrong_key)
                assert len(responses) > 40 and all(r.startswith(b"HTTP/1.1 ") for r in responses)
                gateway.signal()
                assert gateway.wait(15) == 0
                secrets = pieces(UPSTREAM_KEY) + pieces(key[3:]) + pieces(wrong_key[3:]) + [ADMIN_KEY]
                output = gateway.stdout + gateway.stderr
                assert '"request_id"' in output  # the access log is on, and was searched
                for secret in secrets:
                    assert secret not in output, "a secret piece is in the gateway's output: %r" % secret
                    for r in responses:
                        # The key a client sends as its own X-Request-Id comes back to it: allowed.
                        r = r.replace(b"X-Request-Id: " + key.encode(), b"X-Request-Id: (own)")
                        assert secret.encode() not in r, "a secret piece is in a response: %r" % secret
            unauthorized = [r for r in responses if r.startswith(b"HTTP/1.1 502")]
            assert any(b"the upstream rejected the gateway's credentials" in r for r in unauthorized)
        finally:
            for g in gateways:
                g.stop()
