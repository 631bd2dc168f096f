"""The recording proxy: record from one mock, replay with another at speed 0, same bytes."""

import json
import os
import subprocess
import sys

import pytest
import requests

from mock_upstream.recordings import load_file
from tests.mock_helpers import (READY_PREFIX, REPO, _start, dechunk, mock_headers, raw_exchange, raw_post, start_mock,
                                start_recorder)

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


# The recorder as the README shows it (mock_upstream/README.md "Recording").

STORY = {"model": "grok-4.20-non-reasoning", "stream": True,
         "messages": [{"role": "user", "content": "Write a short story about a space adventure"}]}


def run_py(*args, timeout=30):
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def curl(url, *headers):
    argv = ["curl", "-sN", "--noproxy", "*", url + "/v1/chat/completions", "-H", "Authorization: Bearer any-key"]
    for header in headers:
        argv += ["-H", header]
    return subprocess.run(argv + ["-d", json.dumps(STORY)], capture_output=True, timeout=60, check=True).stdout


def test_record_help_names_the_command_that_was_run():
    assert run_py("record", "--help").stdout.startswith("usage: run.py record [-h] --upstream UPSTREAM --out OUT")
    module = subprocess.run([sys.executable, "-m", "mock_upstream.recorder", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert module.stdout.startswith("usage: python -m mock_upstream.recorder [-h]")
    assert "--overwrite" in module.stdout


def test_a_second_run_with_the_same_name_refuses_to_start(tmp_path):
    (tmp_path / "my_story.jsonl").write_text("earlier\n")
    (tmp_path / "my_story-2.jsonl").write_text("earlier\n")
    (tmp_path / "my_story_other.jsonl").write_text("not ours\n")
    proc = run_py("record", "--upstream", "http://127.0.0.1:9", "--out", "my_story", "--dir", str(tmp_path), "--port", "0")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"run.py record: error: {tmp_path}/my_story-2.jsonl exists (2 recording(s) named "
                           f"'my_story' in {tmp_path}); choose another --out, or pass --overwrite to replace them\n")
    assert (tmp_path / "my_story.jsonl").read_text() == "earlier\n"


def test_overwrite_deletes_the_earlier_run_first(tmp_path):
    (tmp_path / "rec.jsonl").write_text("earlier\n")
    (tmp_path / "rec-3.jsonl").write_text("earlier\n")
    (tmp_path / "rec_other.jsonl").write_text("not ours\n")
    with start_mock("--speed", "0") as upstream, start_recorder(upstream.url, "rec", str(tmp_path), "--overwrite") as recorder:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["rec_other.jsonl"]
        r = session().post(recorder.base + "/chat/completions", json=STORY, headers=mock_headers("story"))
        assert r.status_code == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.jsonl", "rec_other.jsonl"]
    assert load_file(str(tmp_path / "rec.jsonl")).name == "rec"


def test_the_readme_walkthrough_records_from_a_second_local_instance(tmp_path):
    """The README's commands, with free ports: a mock as the upstream, the recorder in front, a replay."""
    directory = str(tmp_path / "my_recordings")
    with _start(["run", "mock", "--port", "0"], READY_PREFIX, None, 15) as upstream, \
            _start(["run", "record", "--upstream", upstream.url, "--out", "my_story", "--dir", directory, "--port", "0"],
                   "mock_upstream recorder listening on ", None, 15) as recorder:
        recorded = curl(recorder.url)
    assert recorded.startswith(b'data: {"id":"chatcmpl-mock-') and recorded.endswith(b"data: [DONE]\n\n")
    assert recorded.count(b"data: ") == 22  # the story: 20 chunks (the first with the role), finish, [DONE]
    assert os.listdir(directory) == ["my_story.jsonl"]
    lines = [json.loads(line) for line in open(os.path.join(directory, "my_story.jsonl"))]
    assert lines[0]["request"]["body"] == STORY and len(lines) == 23
    with _start(["run", "mock", "--port", "0", "--speed", "0", "--recordings", directory], READY_PREFIX, None, 15) as replay:
        assert curl(replay.url, "X-Mock-Scenario: my_story") == recorded
    again = run_py("record", "--upstream", "http://127.0.0.1:9", "--out", "my_story", "--dir", directory, "--port", "0")
    assert again.returncode == 2 and "my_story.jsonl exists" in again.stderr
