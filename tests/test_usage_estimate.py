"""Usage a stream is charged when the upstream's usage never came, or came as nonsense: an estimate
marked `usage_estimated` (tornado_grok/usage.py), each count clamped to usage.MAX_TOKENS, on both
limiter backends; and a key with a small --tpm cannot get past it by cutting streams.

Upstreams: tests/cut_upstream.py (exact bytes, for streams that end without usage and for absurd
usage values) and the session mock (raw-socket clients that hang up before the usage event).
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests import servers
from tests.cut_upstream import CutUpstream
from tests.redis_server import available as redis_available
from tests.wire import SEED_PROMPT, chat_body, post

ADMIN_KEY = "admin-test-key-not-a-client-key"
MAX_TOKENS = 4_000_000  # docs/ratelimits.md, "Usage estimates" (usage.MAX_TOKENS)
HUGE = 2 ** 63 - 1

# Ten chat chunks of four bytes of text each (the first one names the role, as xAI's does): 40 bytes,
# 10 tokens at 4 bytes a token.
CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"abcd"}}]}\n\n'
CHAT = [CHUNK.replace(b'"delta":{', b'"delta":{"role":"assistant",')] + [CHUNK] * 9
FINISH = b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
DONE = b"data: [DONE]\n\n"


def delta(seq: int) -> bytes:
    return (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"m1",'
            b'"output_index":0,"content_index":0,"delta":"abcd","sequence_number":%d}\n\n' % seq)


CREATED = (b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
           b'"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}}\n\n')
RESPONSES = [CREATED] + [delta(seq) for seq in range(10, 20)]  # two-digit numbers: one envelope size


def completed(usage) -> bytes:
    obj = {"type": "response.completed", "sequence_number": 20,
           "response": {"id": "resp_1", "object": "response", "status": "completed", "output": [], "usage": usage}}
    return b"event: response.completed\ndata: " + json.dumps(obj).encode() + b"\n\n"


def usage_chunk(usage) -> bytes:
    return b"data: " + json.dumps({"id": "c1", "choices": [], "usage": usage}).encode() + b"\n\n"


def prompt_estimate(*strings: str, items: int = 1) -> int:
    """The documented rule: the body's strings (but `model`) at 4 bytes a token, 3 per item."""
    return math.ceil(sum(len(s.encode()) for s in strings) / 4) + 3 * items


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> dict:
    if request.param == "memory":
        return {}
    if not redis_available():
        pytest.skip("redis-server is not installed")
    return {"ratelimit_backend": "redis", "redis_url": request.getfixturevalue("redis_url"), "redis_timeout": 1.0}


@pytest.fixture
def cut(tmp_path, backend):
    """cut(*key_flags) -> (upstream, gateway, key): a CutUpstream and a gateway before it."""
    upstream = CutUpstream()
    started = []

    def make(*flags):
        folder = str(tmp_path / ("gw%d" % len(started)))
        settings = dict({"admin_key": ADMIN_KEY, "requests_per_minute": 0, "concurrent_requests": 0}, **backend)
        g = servers.start_gateway(folder, upstream.url, settings)
        started.append(g)
        return upstream, g, servers.add_key(os.path.join(folder, "keys.json"), "k", *flags)

    yield make
    for g in started:
        g.stop()
    upstream.close()


def ask_chat(upstream, g, key, pieces, **headers):
    sid = upstream.script(pieces)
    body = {"model": "relay-test", "stream": True, "messages": [{"role": "user", "content": sid}]}
    return sid, post(g.base + "/chat/completions", body, hh.auth(key, **headers))


def ask_responses(upstream, g, key, pieces, **headers):
    sid = upstream.script(pieces)
    return sid, post(g.base + "/responses", {"model": "relay-test", "stream": True, "input": sid},
                     hh.auth(key, **headers))


def totals(g, predicate=lambda t: t.get("requests")):
    """The key's /admin/usage totals once `predicate` holds (accounting may trail the response)."""
    def read():
        t = requests.get(g.url + "/admin/usage", headers=hh.auth(ADMIN_KEY), timeout=10).json()["keys"].get("k", {})
        return t if predicate(t) else None
    return servers.wait_until(read, timeout=10)


def logged(g, path: str) -> dict:
    def find():
        lines = [json.loads(line) for line in g.stderr.splitlines()
                 if line.startswith('{"request_id"') and '"path":"%s"' % path in line and '"ended"' in line]
        return lines[-1] if lines else None
    return servers.wait_until(find, timeout=10)


@pytest.mark.parametrize("resumable", ["false", "true"])
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_stream_cut_before_its_usage_is_charged_an_estimate(cut, api, resumable):
    upstream, g, key = cut()
    if api == "chat":  # then the upstream ends: no usage, no [DONE]
        sid, r = ask_chat(upstream, g, key, CHAT, **{"X-Resumable": resumable})
        names, path = ("prompt_tokens", "completion_tokens"), "/api/v1/chat/completions"
        prompt = prompt_estimate("user", sid)
    else:  # no terminal event
        sid, r = ask_responses(upstream, g, key, RESPONSES, **{"X-Resumable": resumable})
        names, path, prompt = ("input_tokens", "output_tokens"), "/api/v1/responses", prompt_estimate(sid)
    assert r.status_code == 200 and b"without" in r.content.split(b"\n\n")[-2]  # the error event
    usage = {names[0]: prompt, names[1]: 10, "total_tokens": prompt + 10, "usage_estimated": True}
    line = logged(g, path)
    assert line["ended"] == "upstream_error" and line["usage"] == usage and line["usage_estimated"] is True
    t = totals(g, lambda t: t.get("estimated_requests"))
    assert (t["prompt_tokens"], t["completion_tokens"]) == (prompt, 10)
    assert (t["estimated_requests"], t["estimated_tokens"]) == (1, prompt + 10)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_stream_ended_by_an_upstream_error_event_is_charged_an_estimate(cut, api):
    upstream, g, key = cut()
    if api == "chat":
        sid, r = ask_chat(upstream, g, key, CHAT + [b'data: {"code":"Internal error","error":"overloaded"}\n\n'])
        prompt = prompt_estimate("user", sid)
    else:
        error = (b'event: error\ndata: {"type":"error","code":"server_error","message":"overloaded",'
                 b'"param":null,"sequence_number":20}\n\n')
        sid, r = ask_responses(upstream, g, key, RESPONSES + [error])
        prompt = prompt_estimate(sid)
    assert r.status_code == 200 and b"overloaded" in r.content
    t = totals(g)
    assert (t["prompt_tokens"], t["completion_tokens"], t["estimated_requests"], t["errors"]) == (prompt, 10, 1, 1)


def test_usage_cli_shows_the_estimates(cut):
    upstream, g, key = cut()
    sid, r = ask_chat(upstream, g, key, CHAT)
    prompt = prompt_estimate("user", sid)
    totals(g, lambda t: t.get("estimated_requests"))
    out = subprocess.run([sys.executable, "run.py", "usage", "--url", g.url], cwd=servers.ROOT,
                         env=dict(os.environ, TG_ADMIN_KEY=ADMIN_KEY), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    head, row = out.stdout.splitlines()
    assert head.split()[-2:] == ["estimated_requests", "estimated_tokens"]
    assert row.split()[-2:] == ["1", str(prompt + 10)]


@pytest.mark.parametrize("usage", [
    None,  # a stream that ends with [DONE] and never sent usage
    "lots",
    {"prompt_tokens": "5", "completion_tokens": "10", "total_tokens": "15"},
    {"prompt_tokens": -5, "completion_tokens": -10, "total_tokens": -15},
    {"prompt_tokens": 5.0, "completion_tokens": 10.5, "total_tokens": 15.5},
    {"prompt_tokens": 5, "completion_tokens": None, "total_tokens": 15},
    {"prompt": 5, "completion": 10},
], ids=["missing", "string", "strings", "negative", "float", "null", "no-counts"])
def test_usage_that_is_not_counts_falls_back_to_the_estimate(cut, usage):
    upstream, g, key = cut()
    tail = [DONE] if usage is None else [usage_chunk(usage), DONE]
    sid, r = ask_chat(upstream, g, key, CHAT + tail)
    assert r.status_code == 200 and r.content.endswith(DONE)
    prompt = prompt_estimate("user", sid)
    t = totals(g)
    assert (t["prompt_tokens"], t["completion_tokens"], t["estimated_requests"]) == (prompt, 10, 1)
    assert logged(g, "/api/v1/chat/completions")["usage"]["usage_estimated"] is True


def test_responses_usage_that_is_not_counts_falls_back_to_the_estimate(cut):
    upstream, g, key = cut()
    sid, r = ask_responses(upstream, g, key, RESPONSES + [completed({"input_tokens": 3.5, "output_tokens": "x"})])
    assert r.status_code == 200 and b"response.completed" in r.content
    t = totals(g)
    assert (t["prompt_tokens"], t["completion_tokens"], t["estimated_requests"]) == (prompt_estimate(sid), 10, 1)


def test_upstream_usage_that_is_counts_is_charged_as_sent(cut):
    upstream, g, key = cut("--tpm", "1000")
    usage = {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}
    sid, r = ask_chat(upstream, g, key, CHAT + [FINISH, usage_chunk(usage), DONE])
    assert r.status_code == 200
    t = totals(g)
    assert (t["prompt_tokens"], t["completion_tokens"], t["estimated_requests"], t["estimated_tokens"]) == (7, 11, 0, 0)
    assert "usage_estimated" not in logged(g, "/api/v1/chat/completions")


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_absurd_usage_is_clamped_to_the_documented_maximum(cut, api):
    upstream, g, key = cut("--tpm", "1000")
    if api == "chat":
        huge = {"prompt_tokens": HUGE, "completion_tokens": HUGE, "total_tokens": HUGE,
                "completion_tokens_details": {"reasoning_tokens": HUGE}}
        _, r = ask_chat(upstream, g, key, CHAT + [FINISH, usage_chunk(huge), DONE])
    else:
        huge = {"input_tokens": HUGE, "output_tokens": HUGE, "total_tokens": HUGE,
                "output_tokens_details": {"reasoning_tokens": HUGE}}
        _, r = ask_responses(upstream, g, key, RESPONSES + [completed(huge)])
    assert r.status_code == 200
    t = totals(g)
    assert (t["prompt_tokens"], t["completion_tokens"], t["reasoning_tokens"]) == (MAX_TOKENS,) * 3
    assert t["estimated_requests"] == 0

    assert_owes_at_most_max_tokens(g, key)


def assert_owes_at_most_max_tokens(g, key):
    """The key (--tpm 1000) owes MAX_TOKENS: refused, and told to wait MAX_TOKENS / tpm minutes at most."""
    def refused():
        r = requests.get(g.base + "/models", headers=hh.auth(key), timeout=10)
        return [r] if r.status_code == 429 else None  # (a 429 Response is falsy)
    refusal = servers.wait_until(refused, timeout=10)[0]
    assert refusal.headers["x-ratelimit-limit-tokens"] == "1000"
    assert refusal.headers["x-ratelimit-remaining-tokens"] == "0"
    minutes, seconds = re.fullmatch(r"(\d+)m(\d+)s", refusal.headers["x-ratelimit-reset-tokens"]).groups()
    assert 3990 * 60 <= int(minutes) * 60 + int(seconds) <= MAX_TOKENS * 60 // 1000
    assert 0 < int(refusal.headers["Retry-After"]) <= MAX_TOKENS * 60 // 1000


@pytest.mark.parametrize("usage, charged", [
    ({"prompt_tokens": HUGE, "completion_tokens": 3, "total_tokens": HUGE}, (MAX_TOKENS, 3, 0)),
    ({"prompt_tokens": "7", "completion_tokens": 3, "total_tokens": 10}, None),  # estimated: the prompt only
], ids=["absurd", "string"])
def test_a_whole_answers_usage_is_clamped_or_estimated(cut, usage, charged):
    upstream, g, key = cut("--tpm", "1000")
    answer = {"id": "c1", "object": "chat.completion", "model": "relay-test", "usage": usage,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "abcd"}, "finish_reason": "stop"}]}
    sid = upstream.script([json.dumps(answer).encode()], content_type="application/json")
    r = post(g.base + "/chat/completions", {"model": "relay-test", "messages": [{"role": "user", "content": sid}]},
             hh.auth(key))
    assert r.status_code == 200 and r.json()["usage"] == usage  # the client sees what the upstream said
    t = totals(g)
    if charged is None:
        charged = (prompt_estimate("user", sid), 0, 1)
    assert (t["prompt_tokens"], t["completion_tokens"], t["estimated_requests"]) == charged
    if usage["total_tokens"] == HUGE:
        assert_owes_at_most_max_tokens(g, key)


# -- streams the gateway ends, and clients that hang up before the usage event (the session mock) ----

def test_a_stream_ended_by_the_idle_timeout_is_charged_an_estimate(tmp_path, mock):
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    g = servers.start_gateway(folder, mock.base, {"admin_key": ADMIN_KEY, "idle_timeout": 0.3})
    try:
        r = post(g.base + "/chat/completions", chat_body(), hh.auth(key, **{"X-Mock-Scenario": "stall"}))
        assert r.status_code == 200 and b"timeout" in r.content.split(b"\n\n")[-2]
        line = logged(g, "/api/v1/chat/completions")
        assert line["ended"] == "timeout" and line["usage_estimated"] is True
        # The stall scenario's three chunks: "Once", " upon", " a time," (17 bytes of text): ceil(17 / 4).
        prompt = prompt_estimate("user", SEED_PROMPT)
        assert line["usage"] == {"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5,
                                 "usage_estimated": True}
        assert totals(g)["estimated_requests"] == 1
    finally:
        g.stop()


def hang_up(g, key, api: str, test_id: str) -> bytes | None:
    """A raw-socket stream that the client closes after its first text, long before any usage;
    returns the head of a response that was refused instead (None when it was cut)."""
    s = hh.connect(g)
    if api == "chat":
        path, body, marker = "/api/v1/chat/completions", chat_body(), b'"content":" a time,"'
        headers = hh.auth(key, **{"X-Mock-Scenario": "stall"})
    else:
        path, marker = "/api/v1/responses", b"event: response.output_text.delta"
        body = {"model": "grok-4.3", "input": SEED_PROMPT, "stream": True}
        headers = hh.auth(key, **{"X-Mock-Scenario": "responses_story", "X-Mock-Test-Id": test_id})
    s.sendall(hh.raw_request("POST", path, headers, json.dumps(body).encode()))
    with s:
        got = hh.read_until(s, b"\r\n\r\n")
        if not got.startswith(b"HTTP/1.1 200 OK"):
            return hh.read_until(s, b"token rate limit", got)
        hh.read_until(s, marker, got)
    return None


def test_a_stream_ended_by_a_drain_is_charged_an_estimate(tmp_path, mock):
    g, key = hh.start(str(tmp_path), mock.base, {"drain_seconds": 0.5, "idle_timeout": 60})
    try:
        s = hh.open_stream(g, key, chat_body(), **{"X-Mock-Scenario": "stall", "Connection": "close"})
        got = hh.read_until(s, b'" a time,"')
        g.signal(signal.SIGTERM)
        assert b"shutting down" in got + hh.read_all(s)
        assert g.wait(15) == 0
        line = [x for x in hh.access_lines(g) if x["path"] == "/api/v1/chat/completions"][-1]
        prompt = prompt_estimate("user", SEED_PROMPT)
        assert line["ended"] == "drained" and line["usage_estimated"] is True
        assert line["usage"] == {"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5,
                                 "usage_estimated": True}
    finally:
        g.stop()


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_hanging_up_before_the_usage_event_cannot_outrun_the_token_limit(tmp_path, mock, api):
    tpm = 40
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k", "--tpm", str(tpm))
    g = servers.start_gateway(folder, mock.base, {"admin_key": ADMIN_KEY})
    test_id = uuid.uuid4().hex  # the Responses story stalls after its first deltas (no terminal event)
    requests.post(mock.url + "/_mock/faults", json={"test_id": test_id, "fault": {"stall_after": 6}}, timeout=10)
    try:
        refusal = None
        for n in range(1, 9):  # ~20 tokens a cut stream: the third or fourth is refused
            refusal = hang_up(g, key, api, test_id)
            if refusal is not None:
                break
            totals(g, lambda t, n=n: t.get("abandoned_streams", 0) >= n)  # accounted before the next one
        assert refusal is not None, "cut streams were never charged: the key never ran out of tokens"
        head = refusal.split(b"\r\n\r\n")[0].decode().lower()
        assert head.startswith("http/1.1 429")
        assert "x-ratelimit-limit-tokens: %d\r\n" % tpm in head
        assert "x-ratelimit-remaining-tokens: 0\r\n" in head
        assert re.search(r"x-ratelimit-reset-tokens: (\d+ms|\d+(\.\d+)?s|\d+m\d+s)\r\n", head)
        t = totals(g)
        assert t["abandoned_streams"] == t["estimated_requests"] == n - 1 >= 2 and t["estimated_tokens"] > 0
        gone = servers.wait_until(lambda: [json.loads(x) for x in g.stderr.splitlines()
                                           if '"ended":"client_gone"' in x][n - 2:] or None)
        line = gone[-1]  # the access log lags the accounting a little
        assert line["usage_estimated"] is True and line["usage"]["total_tokens"] > 0
    finally:
        g.stop()
        requests.delete(mock.url + "/_mock/faults", params={"test_id": test_id}, timeout=10)
