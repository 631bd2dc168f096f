"""The recording format: validation names file and line; extra recordings and scenario files."""

import base64
import json

import pytest
import requests

from mock_upstream import recordings
from mock_upstream.recordings import RecordingError, load_file
from mock_upstream.scenarios import Registry, ScenarioError
from tests.mock_helpers import MockError, start_mock

HEADER = {"format": "mock-recording/1", "name": "bad", "kind": "stream", "status": 200}
CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}


def write(tmp_path, lines, name="bad"):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return str(path)


@pytest.mark.parametrize("lines,message", [
    ([HEADER, {"data": CHUNK}, {"delay_ms": -5, "data": CHUNK}], "bad.jsonl:3: delay_ms must be a non-negative number"),
    ([HEADER, {"data": CHUNK}, "{not json"], "bad.jsonl:3: not valid JSON"),
    ([dict(HEADER, format="mock-recording/2")], 'bad.jsonl:1: the header must say "format": "mock-recording/1"'),
    ([dict(HEADER, name="other")], 'bad.jsonl:1: name "other" must match the file name "bad"'),
    ([HEADER, {"data": CHUNK, "comment": "x"}], "bad.jsonl:2: each line needs exactly one of"),
    ([HEADER, {"dta": CHUNK}], "bad.jsonl:2: unknown field(s): dta"),
    ([HEADER, {"raw_b64": "%%%"}], "bad.jsonl:2: raw_b64 must be valid base64"),
    ([HEADER, {"action": "explode"}], 'bad.jsonl:2: action must be "disconnect" or "stall"'),
    ([HEADER, {"data": "hello"}], 'bad.jsonl:2: data must be a JSON object or "[DONE]"'),
    ([HEADER, {"body": {}}], 'bad.jsonl:2: a "body" line belongs only in a kind "json" recording'),
    ([dict(HEADER, kind="json")], 'bad.jsonl:1: a kind "json" recording needs a "body" line'),
    ([dict(HEADER, fault={"disconnect_after": "3"})], "bad.jsonl:1: fault: disconnect_after must be a non-negative number"),
    ([HEADER, {"comment": "two\nlines"}], "bad.jsonl:2: comment must be a one-line string"),
    ([HEADER, {"data": CHUNK, "if": "always"}], 'bad.jsonl:2: "if" can only be "include_usage"'),
    ([], "bad.jsonl:1: empty recording"),
])
def test_validation_names_file_and_line(tmp_path, lines, message):
    with pytest.raises(RecordingError) as e:
        load_file(write(tmp_path, lines))
    assert str(e.value).startswith(message)


def test_blank_lines_keep_line_numbers(tmp_path):
    path = write(tmp_path, [HEADER, "", {"data": CHUNK}, "", {"delay_ms": "soon", "data": "[DONE]"}])
    with pytest.raises(RecordingError, match=r"^bad\.jsonl:5: delay_ms"):
        load_file(path)


def test_every_kind_of_line(tmp_path):
    half = "é".encode()[:1]
    path = write(tmp_path, [dict(HEADER, name="every"), {"delay_ms": 0, "data": CHUNK}, {"comment": ""},
                            {"comment": "ping"}, {"raw": "data: {oops\n\n"}, {"raw_b64": base64.b64encode(half).decode()},
                            {"data": "[DONE]"}], "every")
    rec = load_file(path)
    data = b"".join(s.data for s in rec.plan("mm", True, False).steps)
    assert data == (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"mm","choices":[{"index":0,'
                    b'"delta":{"content":"x"},"finish_reason":null}]}\n\n:\n\n: ping\n\ndata: {oops\n\n' + half
                    + b"data: [DONE]\n\n")


def test_bundled_recordings_all_load():
    found = recordings.load_all()
    assert {"story", "reasoning", "tool_call", "usage", "error_mid_stream", "http_400", "http_401", "http_429",
            "http_500", "disconnect", "stall", "ping", "utf8_split", "vision", "slow_first", "malformed",
            "no_chunked"} <= set(found)


def test_scenario_file_errors(tmp_path):
    bad = tmp_path / "s.toml"
    for text, message in [('[[rule]]\nwhen = {model = "x"}\nscenario = "nope"\n', "unknown scenario 'nope'"),
                          ('[[scenario]]\nname = "a"\nbase = "story"\nfault = {bogus = 1}\n', "unknown fault field"),
                          ("[[rules]]\n", "unknown table"), ("[[rule\n", "s.toml")]:
        bad.write_text(text)
        with pytest.raises(ScenarioError, match=message):
            Registry(recordings.load_all(), str(bad))


def test_extra_recordings_and_scenarios_via_the_cli(tmp_path):
    write(tmp_path, [dict(HEADER, name="mine"), {"data": CHUNK}, {"data": "[DONE]"}], "mine")
    toml = tmp_path / "s.toml"
    toml.write_text('[[rule]]\nwhen = {contains = "magic"}\nscenario = "mine"\n')
    with start_mock("--speed", "0", "--recordings", str(tmp_path), "--scenarios", str(toml)) as mock:
        s = requests.Session()
        s.trust_env = False
        r = s.post(mock.base + "/chat/completions", headers={"Authorization": "Bearer k"},
                   json={"model": "q", "stream": True, "messages": [{"role": "user", "content": "the magic word"}]})
        assert r.content.endswith(b'"model":"q","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\ndata: [DONE]\n\n')
        assert mock.journal()[-1]["scenario"] == "mine"


def test_a_bad_recording_stops_the_cli_with_file_and_line(tmp_path):
    write(tmp_path, [HEADER, {"data": CHUNK}, {"delay_ms": -1, "data": CHUNK}])
    with pytest.raises(MockError, match=r"bad\.jsonl:3: delay_ms must be a non-negative number"):
        start_mock("--recordings", str(tmp_path))
