"""Per-key limits through a real gateway process (memory backend): headers, 429 in both renderings,
concurrency, tokens per minute from the upstream's usage, the OpenAI SDK's view, /admin/usage.

Upstream: the session `mock` (conftest.py); `X-Mock-Scenario: stall` holds a stream open.
"""

import json
import os
import re
import signal

import openai
import pytest
import requests

from tests import servers

BODY = {"model": "grok-4.3", "messages": [{"role": "user", "content": "hi"}]}
ADMIN_KEY = "admin-test-key-not-a-client-key"


def start(tmp_path, mock, settings=None, flags=(), name="k"):
    """A gateway with one key `name` made by `run.py keys add name *flags`; returns (gateway, key)."""
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), name, *flags)
    return servers.start_gateway(folder, mock.base, settings), key


def auth(key, **extra):
    return dict({"Authorization": "Bearer " + key}, **extra)


def limit_headers(response) -> dict:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit-")}


def access_lines(gateway) -> list[dict]:
    """The gateway's JSON access-log lines on stderr: one per request that reached it."""
    return [json.loads(line) for line in gateway.stderr.splitlines() if line.startswith('{"request_id"')]


def open_stalled(g, key):
    """A stream the mock holds open after its first events; returns the response once one arrived.

    The line iterator is kept on the response: letting it go would close the connection.
    """
    held = requests.post(g.base + "/chat/completions", json=dict(BODY, stream=True), stream=True,
                         headers=auth(key, **{"X-Mock-Scenario": "stall"}), timeout=60)
    held.lines = held.iter_lines()
    if held.status_code == 200:
        next(held.lines)
    return held


@pytest.fixture
def gw(tmp_path, mock):
    started = []

    def make(settings=None, flags=(), name="k"):
        g, key = start(tmp_path / str(len(started)), mock, settings, flags, name)
        started.append(g)
        return g, key

    yield make
    for g in started:
        g.stop()


def test_headers_on_admitted_and_refused_requests(gw):
    g, key = gw(flags=("--rpm", "3", "--tpm", "100000"))
    seen = [requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key)) for _ in range(4)]
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert [limit_headers(r)["x-ratelimit-remaining-requests"] for r in seen] == ["2", "1", "0", "0"]
    for r in seen:
        h = limit_headers(r)
        assert h["x-ratelimit-limit-requests"] == "3"
        assert re.fullmatch(r"\d+(ms|(\.\d+)?s)|\d+m\d+s", h["x-ratelimit-reset-requests"])
        assert h["x-ratelimit-limit-tokens"] == "100000"
        assert set(h) >= {"x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}
    refused = seen[-1]
    assert refused.headers["Retry-After"] == "20"  # 3 per minute: one comes back every 20 s
    err = refused.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert err["message"] == "API error: rate limit reached for this key (3 requests per minute); retry in 20 s"


def test_every_api_response_carries_the_request_headers(gw):
    """Defaults from [limits] apply to keys without their own; errors after admission keep the headers."""
    g, key = gw(settings={"requests_per_minute": 50, "concurrent_requests": 4})
    models = requests.get(g.base + "/models", headers=auth(key))
    bad = requests.post(g.base + "/chat/completions", data=b"{", headers=auth(key))
    for r in (models, bad):
        assert limit_headers(r)["x-ratelimit-limit-requests"] == "50"
        assert "x-ratelimit-limit-tokens" not in limit_headers(r)  # no token limit set
    assert bad.status_code == 400
    assert limit_headers(bad)["x-ratelimit-remaining-requests"] == "48"


def test_stream_429_is_the_seed_sse_error_event(gw):
    g, key = gw(flags=("--rpm", "1"))
    body = dict(BODY, stream=True)
    first = requests.post(g.base + "/chat/completions", json=body, headers=auth(key))
    assert first.status_code == 200 and first.content.endswith(b"data: [DONE]\n\n")
    second = requests.post(g.base + "/chat/completions", json=body, headers=auth(key))
    assert second.status_code == 429
    assert second.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert second.headers["Retry-After"] == "60"
    assert second.content == (b'data: {"error":"API error: rate limit reached for this key '
                              b'(1 requests per minute); retry in 60 s"}\n\n')
    assert limit_headers(second)["x-ratelimit-remaining-requests"] == "0"


def test_a_stream_counts_once_and_holds_a_concurrency_slot(gw):
    g, key = gw(flags=("--rpm", "100", "--concurrency", "1"))
    held = open_stalled(g, key)
    assert held.status_code == 200
    refused = requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key))
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "concurrent" in refused.json()["error"]["message"]
    # the stream was counted once, at admission; the refused request took nothing
    assert limit_headers(refused)["x-ratelimit-remaining-requests"] == "99"
    held.close()  # the client leaves: its slot comes back
    ok = servers.wait_until(lambda: requests.post(g.base + "/chat/completions", json=BODY,
                                                  headers=auth(key)).status_code == 200, timeout=10)
    assert ok


def usage_chunks(raw: bytes) -> list[dict]:
    out = []
    for line in raw.split(b"\n\n"):
        if line.startswith(b"data: {"):
            obj = json.loads(line[6:])
            if obj.get("usage"):
                out.append(obj)
    return out


def test_tokens_per_minute_from_upstream_usage(gw):
    """The gateway always asks upstream for usage, charges it, and shows the chunk only when asked.

    The mock's answer to "hi" uses 5 tokens; the key may use 8 per minute.
    """
    g, key = gw(flags=("--tpm", "8"))
    plain = requests.post(g.base + "/chat/completions", json=dict(BODY, stream=True), headers=auth(key))
    assert plain.status_code == 200 and usage_chunks(plain.content) == []  # the client did not ask
    assert limit_headers(plain)["x-ratelimit-remaining-tokens"] == "8"
    asked = requests.post(g.base + "/chat/completions", headers=auth(key),
                          json=dict(BODY, stream=True, stream_options={"include_usage": True}))
    chunks = usage_chunks(asked.content)
    assert len(chunks) == 1 and chunks[0]["choices"] == []
    assert chunks[0]["usage"]["total_tokens"] == 5
    # the first stream was charged though its client never saw the usage chunk
    assert limit_headers(asked)["x-ratelimit-remaining-tokens"] == "3"
    refused = requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key))
    assert refused.status_code == 429  # 8 - 5 - 5 = -2: wait until 1 token is back, 3 * 7.5 s
    assert refused.json()["error"]["message"].startswith("API error: token rate limit reached")
    assert 22 <= int(refused.headers["Retry-After"]) <= 23
    assert limit_headers(refused)["x-ratelimit-remaining-tokens"] == "0"


def test_openai_sdk_sees_rate_limit_error_and_honours_retry_after(gw):
    g, key = gw(flags=("--rpm", "20"))
    strict = openai.OpenAI(api_key=key, base_url=g.base, max_retries=0)
    for _ in range(20):
        strict.chat.completions.create(**BODY)
    with pytest.raises(openai.RateLimitError) as e:
        strict.chat.completions.create(**BODY)
    assert e.value.status_code == 429
    retry_after = int(e.value.response.headers["retry-after"])
    assert retry_after == 3  # 20 per minute: one request comes back every 3 s
    # With retries on, the SDK waits Retry-After (3 s, far above its own 0.5 s backoff) and succeeds
    # at its first retry: one more 429, then a 200, reach the gateway.
    before = servers.wait_until(lambda: len(access_lines(g)) == 21 and 21)  # every line so far is in
    patient = openai.OpenAI(api_key=key, base_url=g.base, max_retries=2)
    answer = patient.chat.completions.create(**BODY)
    assert answer.choices[0].message.content
    lines = servers.wait_until(lambda: access_lines(g)[before:] if len(access_lines(g)) >= before + 2 else None)
    assert [line["status"] for line in lines] == [429, 200]


def test_admin_usage_is_the_operators_only(gw):
    g, key = gw(settings={"admin_key": ADMIN_KEY})
    url = g.url + "/admin/usage"
    assert requests.get(url).status_code == 401
    assert requests.get(url, headers=auth(key)).status_code == 403  # a client key is never an admin key
    assert requests.get(url, headers=auth(ADMIN_KEY + "x")).status_code == 403
    ok = requests.get(url, headers=auth(ADMIN_KEY))
    assert ok.status_code == 200 and ok.json() == {"scope": "process", "backend": "memory", "keys": {}}
    off, _ = gw()  # admin_key empty: the admin API does not exist
    assert requests.get(off.url + "/admin/usage", headers=auth(ADMIN_KEY)).status_code == 404


def test_usage_counts_abandoned_streams_with_what_was_seen(gw):
    g, key = gw(settings={"admin_key": ADMIN_KEY})
    done = requests.post(g.base + "/chat/completions", json=dict(BODY, stream=True), headers=auth(key))
    assert done.status_code == 200
    requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key))
    open_stalled(g, key).close()

    def usage():
        r = requests.get(g.url + "/admin/usage", headers=auth(ADMIN_KEY)).json()["keys"].get("k", {})
        return r if r.get("abandoned_streams") == 1 else None

    totals = servers.wait_until(usage, timeout=10)
    assert totals["requests"] == 3 and totals["streams"] == 2 and totals["errors"] == 0
    assert totals["prompt_tokens"] > 0 and totals["completion_tokens"] > 0


def test_usage_cli(gw):
    g, key = gw(settings={"admin_key": ADMIN_KEY})
    requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key))
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "run.py", "usage", "--url", g.url], cwd=servers.ROOT,
                         env=dict(os.environ, TG_ADMIN_KEY=ADMIN_KEY), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^k\s+1\s", out.stdout, re.M), out.stdout
    denied = subprocess.run([sys.executable, "run.py", "usage", "--url", g.url, "--admin-key", "wrong"],
                            cwd=servers.ROOT, capture_output=True, text=True, timeout=30)
    assert denied.returncode != 0 and "403" in denied.stderr


def test_workers_with_memory_backend_say_limits_are_per_process(tmp_path, mock):
    g = servers.start_gateway(str(tmp_path), mock.base, args=("--workers", "2"))
    try:
        assert "limits are PER PROCESS" in g.stdout
        servers.wait_until(lambda: g.stdout.count("tornado_grok listening on") == 2, timeout=20)  # both workers up
        assert requests.get(g.url + "/healthz").status_code == 200
        g.signal(signal.SIGTERM)  # the supervisor passes it on; every worker drains and exits
        assert g.wait(30) == 0
        servers.wait_until(lambda: g.stdout.count("tornado_grok stopped") == 2)
    finally:
        g.stop()


def test_workers_in_mock_mode_each_serve_from_their_own_mock(tmp_path):
    g = servers.start_gateway(str(tmp_path), None, upstream_key=None, args=("--workers", "2"))
    try:
        assert "each worker serves from its own bundled mock" in g.stdout
        servers.wait_until(lambda: g.stdout.count("tornado_grok listening on") == 2, timeout=20)
        for _ in range(4):
            r = requests.post(g.base + "/chat/completions", json=dict(BODY, stream=True),
                              headers=auth("tg-dev-local-mock-key"))
            assert r.status_code == 200 and r.content.endswith(b"data: [DONE]\n\n")
        g.signal(signal.SIGTERM)
        assert g.wait(30) == 0
    finally:
        g.stop()
