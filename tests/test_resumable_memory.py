"""Resumable streams on the memory backend, within one gateway process: opting in, the
ids and the handle, surviving a dropped connection (FIN and RST), resuming byte for byte, access
(key, token), cancel, resume_window, the caps, the rate limit, and the SDKs reading it."""

import json
import os
import shutil
import subprocess
import uuid

import openai
import pytest
import requests

from tests import hardening_helpers as hh
from tests import resumable_helpers as rh
from tests import servers
from tests.servers import wait_until
from tests.wire import SEED_MODEL, SEED_PROMPT, contents

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
OPEN = {"requests_per_minute": 0, "concurrent_requests": 0}
ADMIN = "admin-key-for-the-resumable-tests"


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    g, key = hh.start(str(tmp_path_factory.mktemp("resumable")), mock.base, OPEN)
    yield g, key
    g.stop()


@pytest.fixture(scope="module")
def story(gw):
    """The uninterrupted resumable story stream: (head, body)."""
    g, key = gw
    return rh.whole_stream(g, key)


def test_plain_stream_is_todays_stream(gw, story):
    g, key = gw
    head, plain = rh.whole_stream(g, key, resumable=None)
    _, refused = rh.whole_stream(g, key, resumable="false")
    assert plain == refused
    assert b"\nid:" not in b"\n" + plain and b"x-stream-id" not in head.lower()
    assert rh.strip_ids(story[1]) == plain
    assert plain.count(b"data: [DONE]\n\n") == 1


def test_resumable_stream_has_ids_and_a_handle(story):
    head, body = story
    assert b"X-Stream-Id: " in head and b"X-Resume-Url: /api/v1/streams/" in head
    events = body.split(b"\n\n")[:-1]
    assert [e.split(b"\n")[0] for e in events] == [b"id: %d" % n for n in range(1, len(events) + 1)]
    assert events[-1].endswith(b"data: [DONE]")


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_resume_after_a_drop_is_byte_for_byte(gw, story, mock, rst):
    g, key = gw
    test_id = uuid.uuid4().hex
    partial = rh.Partial(g, key, test_id=test_id)
    got, last = rh.complete_events(partial.read_events(6))
    url = partial.header("X-Resume-Url")
    partial.cut(rst)
    r = rh.resume(g, url, last)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert got + r.content == story[1]
    assert (got + r.content).count(b"data: [DONE]") == 1
    # The upstream went on after the client left: the mock sent the whole story.
    assert mock.wait_ended(test_id=test_id)["ended"] == "complete"


def usage(g, key_name="k") -> dict:
    r = requests.get(g.url + "/admin/usage", headers={"Authorization": "Bearer " + ADMIN}, timeout=5)
    return r.json()["keys"].get(key_name, {})


def test_dropped_stream_holds_its_slot_and_accounts_once(make_gateway, mock):
    g, key = make_gateway(dict(OPEN, debug_endpoints=True, admin_key=ADMIN))
    test_id = uuid.uuid4().hex
    partial = rh.Partial(g, key, test_id=test_id, speed="3")
    got, last = rh.complete_events(partial.read_events(3))
    request_id = partial.header("X-Request-Id")
    partial.cut(False)
    # The client is gone, the upstream is not: the request still holds its slot.
    assert hh.state(g)["inflight"] == 1
    assert hh.access_line(g, request_id)["detached"] is True
    assert mock.wait_ended(test_id=test_id, timeout=10)["ended"] == "complete"
    hh.wait_idle(g)
    totals = wait_until(lambda: usage(g).get("completion_tokens") and usage(g))
    assert (totals["requests"], totals["streams"], totals["abandoned_streams"], totals["errors"]) == (1, 1, 0, 0)
    assert totals["completion_tokens"] == 20


def test_resume_after_completion_replays_to_the_end(gw, story):
    g, key = gw
    partial = rh.Partial(g, key, speed="0")
    body = partial.read_events(10 ** 6)
    url = partial.header("X-Resume-Url")
    partial.cut(False)
    assert body == story[1]
    assert rh.resume(g, url, None).content == story[1]
    assert rh.resume(g, url, 0).content == story[1]
    after5 = requests.get(g.url + url + "&last_event_id=5", timeout=10).content
    assert after5 == story[1][story[1].index(b"id: 6\n"):]
    assert rh.resume(g, url, story[1].count(b"\n\n")).content == b""


def test_only_the_key_or_the_token_may_resume(gw, tmp_path_factory):
    g, key = gw
    partial = rh.Partial(g, key, speed="0")
    body = partial.read_events(10 ** 6)
    url = partial.header("X-Resume-Url")
    partial.cut(False)
    path, token = url.split("?token=")
    other = servers.add_key(g.argv[g.argv.index("--keys-file") + 1], "other-" + uuid.uuid4().hex[:6])
    wait_until(lambda: requests.get(g.url + path, headers={"Authorization": "Bearer " + other},
                                    timeout=5).status_code != 401, timeout=10)
    assert requests.get(g.url + path, headers={"Authorization": "Bearer " + key}, timeout=5).content == body
    assert requests.get(g.url + url, timeout=5).content == body
    wrong = requests.get(g.url + path, headers={"Authorization": "Bearer " + other}, timeout=5)
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "stream_not_found"
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert requests.get(g.url + path + "?token=" + forged, timeout=5).status_code == 404
    assert requests.get(g.url + path, timeout=5).status_code == 401
    assert requests.delete(g.url + path, headers={"Authorization": "Bearer " + other}, timeout=5).status_code == 404
    assert requests.get(g.url + "/api/v1/streams/nosuchstream?token=" + token, timeout=5).status_code == 404


def test_delete_cancels_the_upstream(gw, mock):
    g, key = gw
    test_id = uuid.uuid4().hex
    partial = rh.Partial(g, key, test_id=test_id, speed="3")
    got, last = rh.complete_events(partial.read_events(3))
    url = partial.header("X-Resume-Url")
    partial.cut(True)
    r = requests.delete(g.url + url, timeout=5)
    assert r.status_code == 200 and r.json()["cancelled"] is True
    assert mock.wait_ended(test_id=test_id)["ended"] == "client_closed"
    rest = rh.resume(g, url, last).content
    assert rest.endswith(b'data: {"error":"API error: the stream was cancelled (DELETE)"}\n\n')
    assert b"[DONE]" not in rest
    hh.wait_idle(g)


def test_nobody_back_within_resume_window_cancels(make_gateway, mock):
    g, key = make_gateway(dict(OPEN, debug_endpoints=True, resume_window=0.3, admin_key=ADMIN))
    test_id = uuid.uuid4().hex
    partial = rh.Partial(g, key, test_id=test_id, speed="4")
    got, last = rh.complete_events(partial.read_events(2))
    url = partial.header("X-Resume-Url")
    partial.cut(False)
    assert mock.wait_ended(test_id=test_id, timeout=10)["ended"] == "client_closed"
    rest = rh.resume(g, url, last).content
    assert rest.endswith(b"no reader came back within resume_window (0.3s)\"}\n\n")
    totals = wait_until(lambda: usage(g).get("requests") and usage(g))
    assert (totals["requests"], totals["streams"], totals["abandoned_streams"]) == (1, 1, 1)
    hh.wait_idle(g)


def test_over_the_cap_the_stream_is_no_longer_resumable(make_gateway, story):
    g, key = make_gateway(dict(OPEN, resume_max_bytes=2000))
    head, body = rh.whole_stream(g, key, speed="0")
    assert body == story[1]  # its reader still gets all of it
    url = [line for line in head.split(b"\r\n") if line.startswith(b"X-Resume-Url: ")][0][14:].decode()
    r = rh.resume(g, url, 0)
    assert r.status_code == 410 and "no longer resumable" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "stream_not_resumable"
    line = "stream %s… is no longer resumable: over resume_max_bytes (2000)" % rh.header(head, "X-Stream-Id")[:4]
    wait_until(lambda: line in g.stderr, timeout=5)


def test_a_resume_is_not_a_new_request_for_the_rate_limit(make_gateway, story):
    g, key = make_gateway({"requests_per_minute": 1})
    head, body = rh.whole_stream(g, key, speed="0")
    url = [line for line in head.split(b"\r\n") if line.startswith(b"X-Resume-Url: ")][0][14:].decode()
    again = requests.post(g.base + "/chat/completions", headers=hh.auth(key, **{"X-Resumable": "true"}),
                          json={"model": SEED_MODEL, "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert again.status_code == 429
    for _ in range(3):
        assert rh.resume(g, url, 0, {"Authorization": "Bearer " + key}).content == body


@pytest.fixture(scope="module")
def chatty(mock, tmp_path_factory):
    """A gateway that sends keep-alives between the story's events (one every 10 ms)."""
    g, key = hh.start(str(tmp_path_factory.mktemp("chatty")), mock.base, dict(OPEN, keepalive_interval=0.01))
    yield g, key
    g.stop()


STREAM_HEADERS = {"X-Resumable": "true", "X-Mock-Scenario": "story", "X-Mock-Speed": "3"}


def test_keepalives_of_a_resumable_stream_are_lone_comment_lines(chatty, story):
    g, key = chatty
    head, body = rh.whole_stream(g, key, speed="3")
    assert body.count(b": keep-alive\n") >= 3
    assert b": keep-alive\n\n" not in body
    assert body.replace(b": keep-alive\n", b"") == story[1]


def test_openai_python_reads_a_resumable_stream_with_keepalives(chatty, story):
    g, key = chatty
    client = openai.OpenAI(api_key=key, base_url=g.base, max_retries=0, default_headers=STREAM_HEADERS)
    chunks = list(client.chat.completions.create(
        model=SEED_MODEL, messages=[{"role": "user", "content": SEED_PROMPT}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == contents(rh.strip_ids(story[1]))


def test_openai_node_reads_a_resumable_stream_with_keepalives(chatty, story):
    g, key = chatty
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "openai")):
        pytest.skip("node or openai-node is not installed (npm ci in tests/node)")
    out = subprocess.run([node, "resumable.mjs", g.base, key, json.dumps(STREAM_HEADERS)],
                         cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"ok": True,
                                                               "text": contents(rh.strip_ids(story[1]))}


def test_the_seed_requests_loop_reads_a_resumable_stream_with_keepalives(chatty, story):
    g, key = chatty
    response = requests.post(g.base + "/chat/completions", headers=hh.auth(key, **STREAM_HEADERS),
                             json={"model": SEED_MODEL, "messages": [{"role": "user", "content": SEED_PROMPT}],
                                   "stream": True}, stream=True, timeout=30)
    text = ""
    for line in response.iter_lines():  # the seed's loop, as written
        if line:
            line = line.decode("utf-8")
            if line.startswith("data: "):
                if line.strip() == "data: [DONE]":
                    break
                chunk = json.loads(line[6:])
                text += chunk["choices"][0]["delta"].get("content", "")
    assert text == contents(rh.strip_ids(story[1]))


def test_a_responses_stream_resumes_too(gw):
    g, key = gw
    body = {"model": SEED_MODEL, "input": SEED_PROMPT, "stream": True}
    path = "/api/v1/responses"
    _, plain = rh.whole_stream(g, key, resumable=None, speed="0", path=path, body=body)
    partial = rh.Partial(g, key, path=path, body=body)
    got, last = rh.complete_events(partial.read_events(6))
    url = partial.header("X-Resume-Url")
    partial.cut(True)
    rest = rh.resume(g, url, last).content
    assert got.startswith(b"id: 1\nevent: response.created\n")
    assert rh.strip_ids(got + rest) == plain
    assert (got + rest).count(b"event: response.completed\n") == 1


def readme_resume_loop():
    """The Python resume loop of README.md ("Resumable streams"), as written there."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")) as f:
        text = f.read()
    section = text[text.index("## Resumable streams (opt-in)"):]
    code = section[section.index("```python\n") + 10:]
    code = code[:code.index("```")]
    assert len(code.strip().splitlines()) <= 20
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    return scope["stream_chat"]


def test_the_readme_resume_loop_survives_a_reset(gw, story):
    g, key = gw
    stream_chat = readme_resume_loop()
    proxy = rh.CuttingProxy(g.port, cut_after=1500)  # inside the first events of the story
    try:
        body = {"model": SEED_MODEL, "messages": [{"role": "user", "content": SEED_PROMPT}], "stream": True}
        import requests as _requests
        session_headers = {"X-Mock-Scenario": "story", "X-Mock-Speed": "1"}
        original = _requests.Session.request

        def with_mock_headers(self, method, url, **kwargs):  # the mock's scenario, for this test only
            kwargs["headers"] = dict(kwargs.get("headers") or {}, **session_headers)
            return original(self, method, url, **kwargs)

        _requests.Session.request = with_mock_headers
        try:
            chunks = list(stream_chat("http://127.0.0.1:%d" % proxy.port, key, body))
        finally:
            _requests.Session.request = original
    finally:
        proxy.close()
    assert proxy.connections == 2  # it was cut, and resumed once
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == contents(rh.strip_ids(story[1]))
    assert len(chunks) == story[1].count(b"\n\n") - 1  # every event once, [DONE] ending it


def test_defaults_from_the_key_and_the_config(make_gateway, story):
    g, key = make_gateway(OPEN, key_flags=("--resumable",))
    assert rh.whole_stream(g, key, resumable=None, speed="0")[1] == story[1]
    assert rh.whole_stream(g, key, resumable="false", speed="0")[1] == rh.strip_ids(story[1])
    g, key = make_gateway(dict(OPEN, resumable_default=True))
    assert rh.whole_stream(g, key, resumable=None, speed="0")[1] == story[1]
    other = servers.add_key(g.argv[g.argv.index("--keys-file") + 1], "plain", "--no-resumable")
    servers.wait_until(lambda: requests.get(g.base + "/models", headers={"Authorization": "Bearer " + other},
                                            timeout=5).status_code == 200, timeout=10)
    assert rh.whole_stream(g, other, resumable=None, speed="0")[1] == rh.strip_ids(story[1])
    r = requests.post(g.base + "/chat/completions", headers=hh.auth(key, **{"X-Resumable": "maybe"}),
                      json={"model": SEED_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True},
                      timeout=10)
    assert r.status_code == 400 and "X-Resumable must be true or false" in r.text
