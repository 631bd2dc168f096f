"""Helpers of the security tests (tests/test_security_*.py): an upstream written for them, raw requests.

HostileUpstream is a tiny HTTP server on a free loopback port, run in a thread of the test process.
It records every request line byte for byte (`.lines`), so a test can say exactly what reached the
upstream, and it answers as the test asks through the request (the model name of a chat body, the
id of GET /v1/models/{id}), quoting back the Authorization header it received in every place it
can: error bodies of each status, a redirect's body and Location, SSE error events mid-stream,
response headers. Plain functions and classes, no pytest magic.
"""

import http.server
import json
import socket
import threading

from tests import hardening_helpers as hh

# Statuses the hostile upstream answers with a body quoting the key (chosen by model "status-<N>").
ERROR_STATUSES = (301, 302, 307, 400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503)


def key_variants(key: str) -> list[str]:
    """Ways an upstream may quote a key: whole, as the header, one character short or changed, JSON-escaped."""
    middle = len(key) // 2
    changed = key[:middle] + ("A" if key[middle] != "A" else "B") + key[middle + 1:]
    escaped = "".join("\\u%04x" % ord(c) for c in key[:4]) + key[4:]  # \u0078\u0061\u0069-... in JSON
    return [key, "Bearer " + key, key[:-1], key[1:], changed, escaped]


def quoting_text(key: str) -> str:
    """An error text that quotes the key every way key_variants knows (JSON-escaped forms as JSON text)."""
    return " | ".join("Incorrect API key provided: %s" % v for v in key_variants(key))


def _json_with_escapes(obj: dict) -> bytes:
    # json.dumps would double the backslashes of the escaped variant; put them back so the upstream
    # really sends \u0078... (which decodes to the key).
    return json.dumps(obj).replace("\\\\u", "\\u").encode()


class HostileUpstream:
    """See the module docstring. `.base` is its /v1 URL; `.lines` the request lines it received."""

    def __init__(self):
        self.lines: list[bytes] = []
        self.authorizations: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer._record(self)
                model = self.path.rsplit("/", 1)[-1]
                outer._answer(self, model, streaming=False)

            def do_POST(self):
                outer._record(self)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                outer._answer(self, str(body.get("model", "")), streaming=body.get("stream") is True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = "http://127.0.0.1:%d/v1" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _record(self, handler) -> None:
        self.lines.append(handler.raw_requestline.rstrip(b"\r\n"))
        self.authorizations.append(handler.headers.get("Authorization", ""))

    def _answer(self, handler, model: str, streaming: bool) -> None:
        auth = handler.headers.get("Authorization", "")
        key = auth.split()[-1] if auth else ""
        text = quoting_text(key)
        echo_headers = {"X-Echo-Authorization": auth, "X-Echo-Key": key, "Retry-After": key,
                        "WWW-Authenticate": 'Bearer error="invalid_token", key="%s"' % key}
        if model.startswith("status-"):
            status, _, form = model[len("status-"):].partition("-")
            status = int(status)
            if form == "openai":
                body = _json_with_escapes({"error": {"message": text, "type": "x", "code": key}})
            elif form == "message":
                body = _json_with_escapes({"message": text, "key": key})
            elif form == "text":
                body = ("<html>%s</html>" % text).encode()
            else:
                body = _json_with_escapes({"code": key, "error": text})
            headers = dict(echo_headers)
            if 300 <= status < 400:
                headers["Location"] = "http://127.0.0.1:1/steal?key=%s" % key
            self._send(handler, status, body, headers, "application/json")
        elif model.startswith("midstream-"):
            form = model[len("midstream-"):]
            chunk = {"id": "c1", "object": "chat.completion.chunk", "model": model,
                     "choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": None}]}
            if form == "openai":
                error = {"error": {"message": text, "type": "server_error", "code": key}}
            elif form == "message":
                error = {"error": True, "message": text}
            else:
                error = {"error": text, "code": key}
            events = b"data: " + json.dumps(chunk).encode() + b"\n\n" + \
                b"data: " + _json_with_escapes(error) + b"\n\n"
            self._send(handler, 200, events, echo_headers, "text/event-stream")
        else:
            # A success: a plain answer (the control that the gateway reaches this upstream at all).
            answer = {"id": model, "object": "model", "created": 1, "owned_by": "hostile"}
            if streaming:
                chunk = {"id": "c1", "object": "chat.completion.chunk", "model": model,
                         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
                body = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
                self._send(handler, 200, body, {}, "text/event-stream")
            else:
                self._send(handler, 200, json.dumps(answer).encode(), {}, "application/json")

    @staticmethod
    def _send(handler, status: int, body: bytes, headers: dict, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def exchange(gateway, request: bytes, timeout: float = 15.0) -> bytes:
    """Sends raw request bytes on a new connection and returns everything until the server closes."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout) as s:
        s.sendall(request)
        return hh.read_all(s)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def pieces(secret: str, length: int = 12) -> list[str]:
    """Every substring of `length` characters of a secret: a partial leak counts too."""
    return [secret[i:i + length] for i in range(len(secret) - length + 1)]
