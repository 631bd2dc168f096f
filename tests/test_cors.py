"""CORS for browser front ends (tornado_grok/cors.py): off by default; when configured, preflights
answered without a key, and every response to an allowed origin, errors included, readable by it."""

import uuid

import pytest
import requests

from tests.wire import chat_body
from tornado_grok import config as config_module
from tornado_grok.cors import EXPOSED

APP = "https://chat.example.com"
OTHER = "https://evil.example.net"


@pytest.fixture
def cors_gateway(make_gateway):
    return make_gateway({"cors_origins": APP + ", http://localhost:5173", "requests_per_minute": 2})


def preflight(base, path, origin, method="POST", headers="authorization, content-type"):
    h = {"Origin": origin, "Access-Control-Request-Method": method, "X-Mock-Test-Id": uuid.uuid4().hex}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(base + path, headers=h, timeout=30), h["X-Mock-Test-Id"]


def test_off_by_default(gateway, key):
    r = requests.post(gateway.base + "/chat/completions", json=chat_body(stream=False), timeout=30,
                      headers={"Authorization": "Bearer " + key, "Origin": APP})
    assert r.status_code == 200
    assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    assert "Vary" not in r.headers
    pre, _ = preflight(gateway.base, "/chat/completions", APP)
    assert pre.status_code == 405
    assert not [h for h in pre.headers if h.lower().startswith("access-control-")]


def test_preflight_is_answered_without_a_key(cors_gateway, mock):
    g, _key = cors_gateway
    asked = "authorization, content-type, x-stainless-os"
    for path in ("/chat/completions", "/embeddings", "/models", "/language-models/grok-4.3"):
        r, test_id = preflight(g.base, path, APP, headers=asked)
        assert (r.status_code, r.content) == (204, b"")
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE, OPTIONS"
        assert r.headers["Access-Control-Allow-Headers"] == asked
        assert r.headers["Access-Control-Max-Age"] == "600"
        assert r.headers["Vary"] == "Origin"
        assert mock.journal(test_id=test_id) == []
    # Preflights do not count against the key's rate limit (2 per minute here).
    r = requests.post(g.base + "/chat/completions", json=chat_body(stream=False), timeout=30,
                      headers={"Authorization": "Bearer " + _key, "Origin": APP})
    assert r.headers["x-ratelimit-remaining-requests"] == "1"


def test_allowed_origin_reads_the_answer_and_its_headers(cors_gateway):
    g, key = cors_gateway
    headers = {"Authorization": "Bearer " + key, "Origin": "http://localhost:5173", "Accept": "text/event-stream"}
    r = requests.post(g.base + "/chat/completions", json=chat_body(), headers=headers, timeout=30)
    assert r.status_code == 200 and r.content.endswith(b"data: [DONE]\n\n")
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert r.headers["Vary"] == "Origin"
    exposed = [h.strip() for h in r.headers["Access-Control-Expose-Headers"].split(",")]
    assert exposed == list(EXPOSED)
    for name in ("X-Request-Id", "x-ratelimit-remaining-requests", "Retry-After", "X-Stream-Fallback", "X-Resume-Url",
                 "X-Resumable", "X-Resumable-Reason"):
        assert name in exposed
    vision = requests.post(g.base + "/vision/analyze", timeout=30, headers=headers,
                           json={"image_url": "https://example.com/a.png", "prompt": "what", "stream": True})
    assert vision.headers["X-Stream-Fallback"] == "true"
    assert vision.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


def test_errors_carry_the_cors_headers(cors_gateway):
    g, key = cors_gateway
    no_key = requests.post(g.base + "/chat/completions", json=chat_body(), headers={"Origin": APP}, timeout=30)
    missing = requests.get(g.base + "/nothing", headers={"Origin": APP, "Authorization": "Bearer " + key}, timeout=30)
    limited = [requests.get(g.base + "/models", headers={"Origin": APP, "Authorization": "Bearer " + key},
                            timeout=30) for _ in range(3)][-1]
    for r, status in ((no_key, 401), (missing, 404), (limited, 429)):
        assert r.status_code == status
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert "Retry-After" in r.headers["Access-Control-Expose-Headers"]
        assert r.headers["Vary"] == "Origin"
    assert limited.headers["Retry-After"]


def test_other_origins_get_nothing(cors_gateway, mock):
    g, key = cors_gateway
    r, test_id = preflight(g.base, "/chat/completions", OTHER)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "cors_origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in r.headers
    assert mock.journal(test_id=test_id) == []
    answer = requests.get(g.base + "/models", headers={"Origin": OTHER, "Authorization": "Bearer " + key}, timeout=30)
    assert answer.status_code == 200  # not a browser: the server answers, the browser would not show it
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert answer.headers["Vary"] == "Origin"
    # An allowed origin's look-alikes are other origins.
    for origin in (APP + ".evil.net", "http://chat.example.com", APP + ":8443", "null"):
        r, _ = preflight(g.base, "/models", origin, method="GET")
        assert r.status_code == 403, origin


def test_any_origin_and_explicit_headers(make_gateway):
    g, _key = make_gateway({"cors_origins": "*", "cors_allow_headers": "Authorization,Content-Type",
                            "cors_max_age": 60})
    r, _ = preflight(g.base, "/chat/completions", OTHER, headers="authorization, x-custom")
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == OTHER
    assert r.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert r.headers["Access-Control-Max-Age"] == "60"


def test_config_takes_arrays_and_comma_lists(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[cors]\ncors_origins = ["https://a.example", "http://localhost:3000"]\n'
                    'cors_allow_methods = ["GET", "POST"]\n')
    c = config_module.load(str(path), environ={"XAI_API_KEY": "k"})
    assert c.cors_origins == ("https://a.example", "http://localhost:3000")
    assert c.cors_allow_methods == ("GET", "POST")
    c = config_module.load(str(path), environ={"XAI_API_KEY": "k", "TG_CORS_ORIGINS": "https://b.example, *"})
    assert c.cors_origins == ("https://b.example", "*")
    with pytest.raises(config_module.ConfigError):
        config_module.load(str(path), environ={"XAI_API_KEY": "k", "TG_CORS_ORIGINS": "b.example"})
    with pytest.raises(config_module.ConfigError):
        config_module.load(str(path), environ={"XAI_API_KEY": "k", "TG_CORS_ORIGINS": "https://b.example/app"})
