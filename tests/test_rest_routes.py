"""The route table (tornado_grok/routes.py): every row through the gateway to the mock and back,
its auth and limits, and everything outside the table refused before it reaches the upstream."""

import asyncio
import base64
import http.client
import json
import struct
import uuid
from urllib.parse import urlsplit

import pytest
import requests

from mock_upstream.handlers import rest as mock_rest
from tornado_grok.routes import ROUTES
from tests.servers import UPSTREAM_KEY
from tests.wire import bind

ALIAS, TARGET = "grok-4-1-fast-non-reasoning", "grok-4.20-non-reasoning"

# (method, gateway path, body, upstream path the mock must see)
CASES = [
    ("GET", "/chat/deferred-completion/req-123", None, "/v1/chat/deferred-completion/req-123"),
    ("POST", "/tokenize-text", {"text": "Hello there, Grok", "model": "grok-4.3"}, "/v1/tokenize-text"),
    ("POST", "/embeddings", {"model": "v1", "input": ["one", "two"]}, "/v1/embeddings"),
    ("POST", "/images/edits", {"prompt": "make it red", "image": {"url": "https://example.com/a.png"},
                               "model": "grok-imagine-image"}, "/v1/images/edits"),
    ("GET", "/language-models", None, "/v1/language-models"),
    ("GET", "/language-models/grok-4.3", None, "/v1/language-models/grok-4.3"),
    ("GET", "/image-generation-models", None, "/v1/image-generation-models"),
    ("GET", "/image-generation-models/grok-2-image-1212", None, "/v1/image-generation-models/grok-2-image-1212"),
    ("GET", "/embedding-models", None, "/v1/embedding-models"),
    ("GET", "/embedding-models/v1", None, "/v1/embedding-models/v1"),
]


def tagged(key=None, test_id=None):
    headers = {"X-Mock-Test-Id": test_id or uuid.uuid4().hex}
    if key:
        headers["Authorization"] = "Bearer " + key
    return headers


def call(method, url, body=None, headers=None):
    return requests.request(method, url, json=body, headers=headers, timeout=30)


def test_every_row_has_a_case():
    assert sorted((r.method, r.upstream) for r in ROUTES) == sorted(
        (m, "/" + up.split("/", 2)[2].replace("req-123", "{request_id}").replace("grok-4.3", "{model}")
         .replace("grok-2-image-1212", "{model}").replace("embedding-models/v1", "embedding-models/{model}"))
        for m, _p, _b, up in CASES)


@pytest.mark.parametrize("method,path,body,upstream", CASES, ids=[c[1] for c in CASES])
def test_each_route_relays_the_upstream_answer(gateway, key, mock, method, path, body, upstream):
    headers = tagged(key)
    # A deferred request's id reaches the client bound to its key (ownership.py): the id it sends back.
    r = call(method, gateway.base + path.replace("req-123", bind(gateway, key, "deferred", "req-123")), body, headers)
    direct = call(method, mock.base + path, body, {"Authorization": "Bearer direct"})
    assert (r.status_code, direct.status_code) == (200, 200), r.text
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.content == direct.content  # the upstream's own bytes
    assert r.headers["x-ratelimit-limit-requests"] == "600"
    [entry] = mock.journal(test_id=headers["X-Mock-Test-Id"])
    assert (entry["method"], entry["path"], entry["body"]) == (method, upstream, body)
    assert entry["headers"]["authorization"] == "Bearer " + UPSTREAM_KEY[:4] + "…" + UPSTREAM_KEY[-4:]


def test_deferred_completion_pending_done_and_missing(gateway, key):
    url = gateway.base + "/chat/deferred-completion/"
    pending = call("GET", url + bind(gateway, key, "deferred", "pending-1"), headers=tagged(key))
    assert (pending.status_code, pending.content) == (202, b"")
    done = call("GET", url + bind(gateway, key, "deferred", "abc-42"), headers=tagged(key))
    assert done.status_code == 200
    assert done.json()["choices"][0]["message"]["content"] == "Deferred answer for abc-42."
    missing = call("GET", url + bind(gateway, key, "deferred", "missing-7"), headers=tagged(key))
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "API error: No deferred completion with request id missing-7"


def test_model_aliases_apply_to_ids_and_bodies(gateway, key, mock):
    headers = tagged(key)
    one = call("GET", gateway.base + "/language-models/" + ALIAS, headers=headers)
    assert one.status_code == 200 and one.json()["id"] == ALIAS
    tok = call("POST", gateway.base + "/tokenize-text", {"text": "a b", "model": ALIAS}, headers)
    assert tok.json() == {"token_ids": mock_rest.tokens("a b")}
    emb = call("POST", gateway.base + "/embeddings", {"model": ALIAS, "input": "x"}, headers)
    assert emb.json()["model"] == ALIAS
    entries = mock.journal(test_id=headers["X-Mock-Test-Id"])
    assert [e["path"] for e in entries] == ["/v1/language-models/" + TARGET, "/v1/tokenize-text", "/v1/embeddings"]
    assert [e["body"]["model"] for e in entries[1:]] == [TARGET, TARGET]


def test_openai_sdk_embeddings(openai_client, async_openai_client):
    # Without encoding_format the SDK asks for base64 and decodes it itself; float comes as it is.
    expected = [mock_rest.embedding("alpha"), mock_rest.embedding("beta")]
    for fmt in ({}, {"encoding_format": "float"}):
        result = openai_client.embeddings.create(model="v1", input=["alpha", "beta"], **fmt)
        assert [d.embedding for d in result.data] == expected
        assert (result.model, result.usage.total_tokens) == ("v1", 2)
    raw = openai_client.embeddings.create(model="v1", input="gamma", encoding_format="base64").data[0].embedding
    assert list(struct.unpack("<8f", base64.b64decode(raw))) == mock_rest.embedding("gamma")

    async def run():
        return await async_openai_client.embeddings.create(model="v1", input="delta")
    assert asyncio.run(run()).data[0].embedding == mock_rest.embedding("delta")


def test_token_usage_of_a_relayed_answer_is_accounted(make_gateway):
    g, k = make_gateway({"tokens_per_minute": 1000})
    r = call("POST", g.base + "/embeddings", {"model": "v1", "input": "one two three"}, tagged(k))
    assert r.status_code == 200
    after = call("GET", g.base + "/language-models", headers=tagged(k))
    assert after.headers["x-ratelimit-remaining-tokens"] == "997"


@pytest.mark.parametrize("method,path,body,upstream", CASES, ids=[c[1] for c in CASES])
def test_each_route_needs_a_key(gateway, mock, method, path, body, upstream):
    headers = tagged()
    r = call(method, gateway.base + path, body, headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["error"]["type"] == "authentication_error"
    assert mock.journal(test_id=headers["X-Mock-Test-Id"]) == []


def test_each_route_is_rate_limited(make_gateway, mock):
    g, k = make_gateway({"requests_per_minute": 1})
    headers = tagged(k)
    assert call("GET", g.base + "/embedding-models", headers=headers).status_code == 200
    for method, path, body, _upstream in CASES:
        r = call(method, g.base + path, body, headers)
        assert r.status_code == 429, path
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(mock.journal(test_id=headers["X-Mock-Test-Id"])) == 1


def test_body_checks_name_the_field(gateway, key, mock):
    headers = tagged(key)
    cases = [("/tokenize-text", {"model": "grok-4.3"}, "field 'text' is required and must be a string"),
             ("/embeddings", {"model": "v1", "input": 3}, "field 'input' must be a string or a non-empty array, "
                                                           "not a number"),
             ("/embeddings", {"input": "x"}, "field 'model' is required"),
             ("/images/edits", {"prompt": "p", "image": {"url": "ftp://x"}},
              "field 'image' must be an object with a 'url' (an http(s) URL or a data:image URI)")]
    for path, body, message in cases:
        r = call("POST", gateway.base + path, body, headers)
        assert (r.status_code, r.json()["error"]["message"]) == (400, "API error: " + message)
    assert mock.journal(test_id=headers["X-Mock-Test-Id"]) == []


def raw_get(gateway, path, headers):
    """A GET with the path exactly as given: no client-side normalisation or re-encoding."""
    u = urlsplit(gateway.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


TRAVERSALS = [
    "/api/v1/language-models/..%2fapi-key",
    "/api/v1/language-models/..%2F..%2Fapi-key",
    "/api/v1/language-models/%2e%2e",
    "/api/v1/language-models/%2e%2e%2fapi-key",
    "/api/v1/language-models/grok%00",
    "/api/v1/language-models/grok-4.3%00..%2fapi-key",
    "/api/v1/language-models/%252e%252e%252fapi-key",
    "/api/v1/language-models/%25252e%25252e",
    "/api/v1/language-models/..",
    "/api/v1/language-models/.",
    "/api/v1/language-models/../api-key",
    "/api/v1/language-models/../../v1/api-key",
    "/api/v1/embedding-models/%2e%2e%5capi-key",
    "/api/v1/embedding-models/a%3fb=c",
    "/api/v1/embedding-models/a%23b",
    "/api/v1/chat/deferred-completion/..%2f..%2fapi-key",
    "/api/v1/chat/deferred-completion/%2e%2e%2f%2e%2e%2fapi-key",
    "/api/v1/chat/deferred-completion/x%20y",
    "/api/v1/chat/deferred-completion/" + "a" * 129,
    "/api/v1/api-key",
    "/api/v1/api-key/",
    "/api/v1/API-KEY",
    "/api/v1//api-key",
    "/api/v1/files",
    "/api/v1/language-models/",
    "/api/v1/language-models/grok-4.3/extra",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_nothing_outside_the_table_reaches_the_upstream(gateway, key, mock, path):
    headers = tagged(key)
    status, body = raw_get(gateway, path, headers)
    assert status in (400, 404), (status, body)
    error = json.loads(body)["error"]
    message = error["message"]
    if status == 400:  # validate.path_id's refusal, naming the id's type
        assert error["code"] == "invalid_id" and message.split()[2] in ("model", "request_id"), error
    else:
        assert message.startswith("API error: no such endpoint: GET ")
    assert mock.journal(test_id=headers["X-Mock-Test-Id"]) == []


def test_the_mock_journals_unknown_paths(mock):
    # The check above is only as good as the journal: a request to a path the mock does not serve
    # is journaled too.
    test_id = uuid.uuid4().hex
    r = call("GET", mock.base + "/api-key", headers={"Authorization": "Bearer x", "X-Mock-Test-Id": test_id})
    assert r.status_code == 404
    [entry] = mock.journal(test_id=test_id)
    assert entry["path"] == "/v1/api-key"


def test_wrong_method_is_405_with_allow(gateway, key, mock):
    headers = tagged(key)
    for method, path, allow in (("POST", "/language-models", "GET"), ("DELETE", "/embeddings", "POST"),
                                ("PUT", "/tokenize-text", "POST")):
        r = call(method, gateway.base + path, {}, headers)
        assert (r.status_code, r.headers["Allow"]) == (405, allow), (method, path)
    assert mock.journal(test_id=headers["X-Mock-Test-Id"]) == []


def test_image_edit_through_the_sdk_raw_post(openai_client):
    # images.edit uploads multipart, which xAI's /images/edits does not take; the SDK's own post()
    # sends the JSON body (README "Endpoints").
    result = openai_client.post("/images/edits", cast_to=object, body={
        "prompt": "make it red", "image": {"url": "https://example.com/a.png"}, "response_format": "b64_json"})
    assert result["data"] == [{"b64_json": mock_rest.PNG_B64, "revised_prompt": "The image, edited: make it red"}]


def test_metrics_label_a_row_by_its_template(make_gateway):
    g, k = make_gateway({"debug_endpoints": True})
    for model in ("grok-4.3", "grok-2-image-1212", "nope"):  # the image model is no language model: 404
        call("GET", g.base + "/language-models/" + model, headers=tagged(k))
    text = requests.get(g.url + "/metrics", timeout=30).text
    assert 'endpoint="/api/v1/language-models/{model}",status="200"} 1.0' in text
    assert 'endpoint="/api/v1/language-models/{model}",status="404"} 2.0' in text
    assert "grok-4.3" not in text
