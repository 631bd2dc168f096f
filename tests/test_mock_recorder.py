"""The recording proxy: record from one mock, replay with another at speed 0, same bytes."""

import json
import os

import pytest
import requests

from mock_upstream.recordings import load_file
from tests.mock_helpers import dechunk, mock_headers, raw_exchange, raw_post, start_mock, start_recorder

UPSTREAM_KEY = "xai-upstream-key-1234567890"
CLIENT_KEY = "client-key-abcdefghijkl"


def session(key=CLIENT_KEY):
    s = requests.Session()
    s.trust_env = False
    s.headers["Authorization"] = "Bearer " + key
    return s


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Exchanges made through the recorder in front of a mock; what the client got, by name."""
    directory = str(tmp_path_factory.mktemp("recorded"))
    got = {}
    with start_mock("--speed", "0", "--require-key", UPSTREAM_KEY) as upstream, \
            start_recorder(upstream.url, "rec", directory, env={"XAI_API_KEY": UPSTREAM_KEY}) as recorder:
        s = session()
        plan = [("story", True, True), ("story", False, False), ("ping", True, False), ("utf8_split", True, True),
                ("http_429", True, False), ("malformed", True, False), ("reasoning", True, True)]
        for i, (scenario, stream, usage) in enumerate(plan, 1):
            body = {"model": "grok-rec", "stream": stream, "messages": [{"role": "user", "content": f"say {CLIENT_KEY}"}]}
            if usage:
                body["stream_options"] = {"include_usage": True}
            r = s.post(recorder.base + "/chat/completions", json=body, headers=mock_headers(scenario))
            got["rec" if i == 1 else f"rec-{i}"] = (scenario, body, r.status_code, r.headers, r.content)
        raw = raw_exchange(recorder.url, raw_post("/v1/chat/completions", {"model": "grok-rec", "stream": True, "messages": [
            {"role": "user", "content": "x"}]}, {"Authorization": "Bearer " + CLIENT_KEY, **mock_headers("disconnect")}))
        got["rec-8"] = ("disconnect", None, None, None, raw)
        assert upstream.journal()[0]["headers"]["authorization"] == "Bearer xai-…7890"
    return directory, got


def test_recorder_relays_what_the_upstream_sent(recorded):
    directory, got = recorded
    scenario, body, status, headers, content = got["rec"]
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert content.endswith(b"data: [DONE]\n\n") and b'"model":"grok-rec"' in content
    assert got["rec-5"][2] == 429 and got["rec-5"][3]["Retry-After"] == "7"
    assert dechunk(got["rec-8"][4])[2] is False


def test_recordings_are_written_and_scrubbed(recorded):
    directory, got = recorded
    assert sorted(os.listdir(directory)) == sorted(f"{n}.jsonl" for n in got)
    for name in got:
        text = open(os.path.join(directory, name + ".jsonl"), encoding="utf-8").read()
        assert UPSTREAM_KEY not in text and CLIENT_KEY not in text and "uthorization" not in text
        rec = load_file(os.path.join(directory, name + ".jsonl"))
        assert rec.name == name
    header = json.loads(open(os.path.join(directory, "rec.jsonl")).readline())
    assert header["request"]["path"] == "/v1/chat/completions" and header["kind"] == "stream"
    assert header["headers"] == {"Content-Type": "text/event-stream"}
    ping = open(os.path.join(directory, "rec-3.jsonl")).read()
    assert '"comment": "ping"' in ping and '"comment": ""' in ping
    malformed = open(os.path.join(directory, "rec-6.jsonl")).read()
    assert '"raw": ' in malformed
    assert open(os.path.join(directory, "rec-8.jsonl")).read().rstrip().endswith('"action": "disconnect"}')


def test_replay_at_speed_0_is_byte_identical(recorded):
    directory, got = recorded
    with start_mock("--speed", "0", "--recordings", directory) as replay:
        s = session()
        for name, (scenario, body, status, headers, content) in got.items():
            if body is None:
                continue
            r = s.post(replay.base + "/chat/completions", json=body, headers=mock_headers(name))
            assert (name, r.status_code, r.content) == (name, status, content)
            if status == 429:
                assert r.headers["Retry-After"] == "7"
        raw = raw_exchange(replay.url, raw_post("/v1/chat/completions", {"model": "grok-rec", "stream": True, "messages": [
            {"role": "user", "content": "x"}]}, {"Authorization": "Bearer k", **mock_headers("rec-8")}))
        assert dechunk(raw)[1:] == dechunk(got["rec-8"][4])[1:]
