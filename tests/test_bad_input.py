"""Bad requests: each answered with its documented status and a message that names the problem."""

import json
import socket

import pytest
import requests

from tests.wire import chat_body, post

CHAT = "/chat/completions"


def call(gateway, path, body=None, key=None, method="POST", raw=None, headers=None):
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    h.update(headers or {})
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return requests.request(method, gateway.base + path, data=data, headers=h, timeout=30)


@pytest.mark.parametrize("raw,status,words", [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"[1, 2]", 400, "must be a JSON object, not an array"),
    (b'"text"', 400, "must be a JSON object, not a string"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "field 'model' is required"),
    (b'{"model": 7, "messages": [{"role": "user", "content": "hi"}]}', 400, "field 'model' must be a non-empty string, not a number"),
    (b'{"model": "m"}', 400, "field 'messages' is required"),
    (b'{"model": "m", "messages": "hi"}', 400, "field 'messages' must be a non-empty array, not a string"),
    (b'{"model": "m", "messages": []}', 400, "field 'messages' must be a non-empty array, not an empty array"),
    (b'{"model": "m", "messages": [7]}', 400, "messages[0] must be an object, not a number"),
    (b'{"model": "m", "messages": [{"content": "hi"}]}', 400, "messages[0].role must be one of"),
    (b'{"model": "m", "messages": [{"role": "user", "content": 5}]}', 400, "messages[0].content must be a string or an array"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', 400, "field 'stream' must be a boolean, not a string"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream_options": 1}', 400, "field 'stream_options' must be an object"),
    (b'\xff\xfe{"model"', 400, "not valid JSON"),
])
def test_chat_body_errors(gateway, key, raw, status, words):
    r = call(gateway, CHAT, key=key, raw=raw)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    error = r.json()["error"]
    assert error["message"].startswith("API error: ")
    assert words in error["message"]
    assert error["type"] == "invalid_request_error"


def test_stream_request_errors_are_sse_events(gateway, key):
    r = call(gateway, CHAT, {"model": "m", "messages": [], "stream": True}, key=key)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert r.content == (b'data: {"error":"API error: field \'messages\' must be a non-empty array, '
                         b'not an empty array"}\n\n')


@pytest.mark.parametrize("authorization,words", [
    (None, "missing Authorization header"),
    ("tg-abc", "must use the Bearer scheme"),
    ("Basic dXNlcjpwYXNz", "must use the Bearer scheme"),
    ("Bearer", "empty API key"),
    ("Bearer ", "empty API key"),
    ("Bearer tg-wrong", "Invalid authentication token"),
    ("bearer  tg-wrong ", "Invalid authentication token"),
])
def test_authorization_forms(gateway, authorization, words):
    headers = {} if authorization is None else {"Authorization": authorization}
    r = call(gateway, CHAT, chat_body(stream=False), headers=headers)
    assert r.status_code == 401
    assert words in r.json()["error"]["message"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_seed_error_form_for_a_streamed_request_with_a_bad_key(gateway):
    r = call(gateway, CHAT, chat_body(), headers={"Authorization": "Bearer tg-wrong"})
    assert r.status_code == 401
    assert r.content == b'data: {"error":"API error: Invalid authentication token"}\n\n'


def test_oversized_body_is_413(gateway, key):
    big = json.dumps(chat_body(content="x" * (21 * 1024 * 1024), stream=False))
    r = call(gateway, CHAT, key=key, raw=big)
    assert r.status_code == 413
    assert "larger than the limit of 20971520 bytes" in r.json()["error"]["message"]


def test_oversized_chunked_body_is_413(gateway, key):
    def chunks():
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(22):
            yield b"x" * (1024 * 1024)
        yield b'"}]}'
    r = requests.post(gateway.base + CHAT, data=chunks(), timeout=60,
                      headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_unknown_path_and_wrong_method(gateway, key):
    r = call(gateway, "/nothing/here", {}, key=key)
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "API error: no such endpoint: POST /api/v1/nothing/here"
    r = call(gateway, CHAT, key=key, method="GET")
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"
    assert r.json()["error"]["message"] == "API error: method GET is not allowed on /api/v1/chat/completions"
    r = call(gateway, "/models", key=key, method="DELETE")
    assert r.status_code == 405


@pytest.mark.parametrize("body,status,words", [
    ({}, 400, "field 'prompt' is required"),
    ({"prompt": "x", "n": 11}, 400, "field 'n' must be between 1 and 10"),
    ({"prompt": "x", "n": "2"}, 400, "field 'n' must be a number"),
    ({"prompt": "x", "response_format": "gif"}, 400, "field 'response_format' must be one of url, b64_json"),
])
def test_image_request_errors(gateway, key, body, status, words):
    r = call(gateway, "/images/generate", body, key=key)
    assert r.status_code == status
    assert words in r.json()["error"]["message"]


def test_request_id_is_kept_or_made(gateway, key):
    r = call(gateway, "/models", key=key, method="GET", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r = call(gateway, "/models", key=key, method="GET", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces" and len(r.headers["X-Request-Id"]) == 32
    r = call(gateway, "/nothing", method="GET")
    assert len(r.headers["X-Request-Id"]) == 32


def test_no_traceback_and_server_still_answers(gateway, key):
    host, port = gateway.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Authorization: Bearer " + key.encode() + b"\r\n\r\n\x00\x01\x02\x03\x04")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400")
    assert b"Traceback" not in reply
    assert post(gateway.base + CHAT, chat_body(stream=False), {"Authorization": "Bearer " + key}).status_code == 200
