"""Hostile input over real HTTP: a few thousand malformed requests (hypothesis, derandomized) with odd
bodies, headers, methods and paths, huge and deeply nested JSON, invalid UTF-8. No answer is a 5xx
or shows a traceback, every error has the usual body, and the gateway still answers correctly
afterwards. Nothing a client sends reaches a response header unescaped (CR/LF attempts on raw
sockets)."""

import json
import re
import socket
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests import hardening_helpers as hh
from tests.wire import chat_body, post

EXAMPLES = 800  # per property below: about 3,300 requests in all
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
POSTS = ["/api/v1/chat/completions", "/api/v1/images/generate", "/api/v1/images/generations",
         "/api/v1/vision/analyze"]
PATHS = POSTS + ["/api/v1/models", "/api/v1/models/grok-4.3", "/healthz", "/readyz", "/metrics",
                 "/debug/state", "/admin/usage", "/", "/api/v1", "/api/v1/"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
FRAMING = {"content-length", "transfer-encoding", "connection", "host", "expect"}
TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
STATUS = re.compile(rb"^HTTP/1\.1 (\d{3}) ")


@pytest.fixture(scope="module")
def fuzz_gateway(mock, tmp_path_factory):
    g, key = hh.start(str(tmp_path_factory.mktemp("fuzz")), mock.base,
                      {"requests_per_minute": 0, "concurrent_requests": 0, "max_body_size": 2 * 1024 * 1024,
                       "first_event_timeout": 10.0})
    yield g, key
    g.stop()


def exchange(gateway, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=15) as s:
        s.sendall(request)
        return hh.read_all(s)


def build(method: str, path: str, headers: list, body: bytes | None) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method.encode("latin-1"), path.encode("latin-1", "replace")), b"Host: 127.0.0.1",
             b"Connection: close"]
    lines += [b"%s: %s" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def check(raw: bytes, method: str = "POST") -> int:
    """The answer is an HTTP response, not a 5xx, without a traceback, with the usual error body."""
    m = STATUS.match(raw)
    assert m, raw[:300]
    status = int(m.group(1))
    assert status < 500, raw[:2000]
    assert b"Traceback" not in raw and b'File "/' not in raw, raw[:2000]
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
    if status >= 400 and body and method != "HEAD":
        if b"transfer-encoding: chunked" in head.lower():
            body = hh.dechunk(raw)[1]
        if b"text/event-stream" in head:
            assert body.startswith(b'data: {"error":"API error: ') and body.endswith(b"\n\n"), body[:300]
        else:
            err = json.loads(body)["error"]
            assert err["message"].startswith("API error: ") and err["type"], body[:300]
    elif status >= 400 and method != "HEAD" and head.split(b" ", 2)[1] != b"400":
        raise AssertionError("an error without a body: %r" % raw[:300])
    return status


json_leaves = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
               | st.text(max_size=30))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
CHAT_FIELDS = ["model", "messages", "stream", "stream_options", "temperature", "max_tokens", "tools", "n",
               "tool_choice", "response_format", "top_p", "user", "seed", "stop", "logprobs"]
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id"]


def assert_still_sound(gateway, key, log_start: int) -> None:
    """After a test's hostile requests: the gateway still answers a normal stream correctly, holds
    nothing, and logged no traceback since `log_start` (the test's own part of the log)."""
    r = post(gateway.base + "/chat/completions", chat_body(), hh.auth(key, **{"X-Mock-Scenario": "story"}))
    assert r.status_code == 200 and r.content.endswith(b"data: [DONE]\n\n")
    hh.wait_idle(gateway)
    logged = "".join(gateway.stderr_lines[log_start:])
    assert "Traceback" not in logged, logged[-5000:]


@st.composite
def mutated_chat(draw):
    """A valid chat body with a few fields replaced by arbitrary JSON, or removed."""
    body = chat_body(content=draw(st.sampled_from(["hi", "Write a haiku", ""])), stream=draw(st.booleans()),
                     model=draw(st.sampled_from(["grok-4.3", "grok-4-1-fast-non-reasoning"])))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "top", "message", "content_part", "drop"]))
        if where == "top":
            body[draw(st.sampled_from(CHAT_FIELDS) | st.text(max_size=8))] = draw(json_values)
        elif where == "message" and isinstance(body.get("messages"), list) and body["messages"] \
                and isinstance(body["messages"][0], dict):
            body["messages"][0][draw(st.sampled_from(MESSAGE_FIELDS))] = draw(json_values)
        elif where == "content_part" and isinstance(body.get("messages"), list) and body["messages"] \
                and isinstance(body["messages"][0], dict):
            part = draw(st.dictionaries(st.sampled_from(["type", "text", "image_url", "detail"]), json_values,
                                        max_size=3))
            body["messages"][0]["content"] = [part]
        elif where == "drop" and body:
            body.pop(draw(st.sampled_from(sorted(body))), None)
    return body


@st.composite
def mutated_other(draw):
    """A vision or images body with fields replaced by arbitrary JSON."""
    path = draw(st.sampled_from(POSTS[1:]))
    if path.startswith("/api/v1/vision"):
        body = {"image_url": "https://example.com/cat.png", "prompt": "what is it?"}
        fields = ["image_url", "prompt", "model", "detail", "max_tokens", "temperature", "stream"]
    else:
        body = {"prompt": "a cat"}
        fields = ["prompt", "model", "n", "response_format", "stream", "size"]
    for _ in range(draw(st.integers(1, 3))):
        body[draw(st.sampled_from(fields))] = draw(json_values)
    return path, body


def test_fuzz_chat_bodies(fuzz_gateway):
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)

    @FUZZ
    @given(body=mutated_chat())
    def run(body):
        raw = exchange(gateway, build("POST", "/api/v1/chat/completions", list(hh.auth(key).items()),
                                      json.dumps(body).encode()))
        check(raw)

    run()
    assert_still_sound(gateway, key, log_start)


def test_fuzz_vision_and_images_bodies(fuzz_gateway):
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)

    @FUZZ
    @given(case=mutated_other())
    def run(case):
        path, body = case
        check(exchange(gateway, build("POST", path, list(hh.auth(key).items()), json.dumps(body).encode())))

    run()
    assert_still_sound(gateway, key, log_start)


def test_fuzz_raw_bodies(fuzz_gateway):
    """Not-JSON, truncated JSON, invalid UTF-8 and odd encodings of JSON, to every POST endpoint."""
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)
    valid = json.dumps(chat_body(content="héllo 🚀")).encode()
    bodies = (st.binary(max_size=600)
              | st.integers(0, len(valid)).map(lambda n: valid[:n])
              | st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]).map(
                  lambda enc: json.dumps(chat_body(content="héllo"), ensure_ascii=False).encode(enc))
              | st.binary(min_size=1, max_size=8).map(lambda junk: valid.replace(b"llo", junk, 1))
              | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))

    @FUZZ
    @given(path=st.sampled_from(POSTS), body=bodies)
    def run(path, body):
        check(exchange(gateway, build("POST", path, list(hh.auth(key).items()), body)))

    run()
    assert_still_sound(gateway, key, log_start)


def test_fuzz_methods_paths_and_headers(fuzz_gateway):
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)
    names = st.sampled_from(["Authorization", "Content-Type", "X-Request-Id", "Accept", "Accept-Encoding",
                             "User-Agent", "Origin", "Cookie", "X-Forwarded-For"]) \
        | st.text(alphabet=TOKEN, min_size=1, max_size=20).filter(lambda n: n.lower() not in FRAMING
                                                                  and not n.lower().startswith("x-mock"))
    values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                     max_size=60)
    paths = st.sampled_from(PATHS) | st.tuples(st.sampled_from(PATHS), st.binary(max_size=30)).map(
        lambda p: p[0] + urllib.parse.quote(p[1], safe="/%?&=;"))
    methods = st.sampled_from(METHODS) | st.text(alphabet=TOKEN, min_size=1, max_size=10)

    @FUZZ
    @given(method=methods, path=paths, headers=st.lists(st.tuples(names, values), max_size=6),
           with_key=st.booleans(), body=st.none() | st.just(json.dumps(chat_body(stream=False)).encode()))
    def run(method, path, headers, with_key, body):
        if with_key:
            headers = [("Authorization", "Bearer " + key)] + headers
        check(exchange(gateway, build(method, path, headers, body)), method)

    run()
    assert_still_sound(gateway, key, log_start)


@pytest.mark.parametrize("depth", [10_000, 100_000, 1_000_000])
@pytest.mark.parametrize("where", ["top", "content", "tools"])
def test_deeply_nested_json_is_a_400(fuzz_gateway, depth, where):
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)
    nested = "[" * depth + "]" * depth
    body = {"top": nested,
            "content": '{"model":"grok-4.3","messages":[{"role":"user","content":%s}]}' % nested,
            "tools": '{"model":"grok-4.3","messages":[{"role":"user","content":"hi"}],"tools":%s}' % nested}[where]
    raw = exchange(gateway, build("POST", "/api/v1/chat/completions", list(hh.auth(key).items()), body.encode()))
    assert check(raw) == 400
    assert b"depth limit" in raw
    assert_still_sound(gateway, key, log_start)


def test_huge_bodies(fuzz_gateway):
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)
    limit = 2 * 1024 * 1024
    filler = "x" * (limit - 200)
    ok = post(gateway.base + "/chat/completions", chat_body(content=filler, stream=False), hh.auth(key))
    assert ok.status_code == 200
    # Over the limit: answered 413 from the Content-Length alone, before any of the body is read.
    head = build("POST", "/api/v1/chat/completions", list(hh.auth(key).items()) + [
        ("Content-Length", str(limit + 1000))], None)
    answer = check(exchange(gateway, head))
    assert answer == 413
    wide = json.dumps({"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}] * 20000}).encode()
    assert check(exchange(gateway, build("POST", "/api/v1/chat/completions", list(hh.auth(key).items()),
                                         wide))) == 200
    assert_still_sound(gateway, key, log_start)


INJECTIONS = ["x\r\nSet-Cookie: evil=1", "x\nSet-Cookie: evil=1", "x\rSet-Cookie: evil=1",
              "x\r\n\r\n<html>evil</html>", "x\u2028Set-Cookie: evil=1", "x%0d%0aSet-Cookie:%20evil=1"]


def assert_clean_head(raw: bytes) -> None:
    head = raw.partition(b"\r\n\r\n")[0]
    assert STATUS.match(raw), raw[:200]
    assert b"evil" not in head and b"set-cookie" not in head.lower(), head
    for line in head.split(b"\r\n")[1:]:
        assert re.fullmatch(rb"[A-Za-z0-9-]+: [\x20-\x7e]*", line), line


@pytest.mark.parametrize("value", INJECTIONS)
def test_no_header_injection_through_request_id(fuzz_gateway, value):
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)
    raw = b"GET /api/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer " + \
        key.encode() + b"\r\nX-Request-Id: " + value.encode("utf-8") + b"\r\n\r\n"
    answer = exchange(gateway, raw)
    assert_clean_head(answer)
    assert_still_sound(gateway, key, log_start)


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("stream", [True, False])
def test_no_header_injection_through_model_or_messages(fuzz_gateway, value, stream):
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)
    for body in (chat_body(model=value, stream=stream), chat_body(content=value, stream=stream),
                 {"image_url": "https://example.com/" + value, "prompt": value, "stream": stream}):
        path = "/api/v1/vision/analyze" if "image_url" in body else "/api/v1/chat/completions"
        answer = exchange(gateway, build("POST", path, list(hh.auth(key).items()), json.dumps(body).encode()))
        assert_clean_head(answer)
        check(answer)
    assert_still_sound(gateway, key, log_start)


@pytest.mark.parametrize("value", INJECTIONS)
def test_no_header_injection_through_paths(fuzz_gateway, value):
    gateway, key = fuzz_gateway
    log_start = len(gateway.stderr_lines)
    path = "/api/v1/models/" + urllib.parse.quote(value, safe="%")
    answer = exchange(gateway, build("GET", path, list(hh.auth(key).items()), None))
    assert_clean_head(answer)
    check(answer, "GET")
    assert_still_sound(gateway, key, log_start)


def test_openapi_describes_every_route():
    """docs/openapi.yaml parses, its $refs resolve, and its paths are exactly the app's routes."""
    import os

    import yaml

    from tornado_grok.app import ROUTE_MODULES

    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "openapi.yaml")) as f:
        doc = yaml.safe_load(f)
    assert doc["openapi"].startswith("3.")
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node = doc
        for part in ref.split("/"):
            node = node[part]
    routes = {re.sub(r"\([^)]*\)", "{model}", re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", entry[0]))
              for module in ROUTE_MODULES for entry in module.default_handlers}
    assert set(doc["paths"]) == routes
