"""The mock upstream speaks the Responses API: recordings with typed events, scenario selection,
faults shaped as Responses events, the journal, stored responses for GET/DELETE, the synthetic stream."""

import json
import uuid

import pytest
import requests

from mock_upstream.recordings import RecordingError, load_file
from tests.wire import events

AUTH = {"Authorization": "Bearer any-key"}


def create(mock, body, **headers):
    return requests.post(mock.base + "/responses", json=body, headers=dict(AUTH, **headers), timeout=10)


def payloads(raw):
    return [(b.split(b"\n", 1)[0][len(b"event: "):].decode(), json.loads(b.split(b"\ndata: ", 1)[1]))
            for b in events(raw) if b.startswith(b"event: ")]


def test_scenarios_list_the_responses_recordings(mock):
    rows = {row["name"]: row for row in mock.admin("GET", "scenarios")[1]["scenarios"]}
    for name in ("story", "reasoning", "function_call", "web_search", "error_mid_stream", "incomplete", "failed",
                 "no_terminal", "malformed"):
        assert rows["responses_" + name]["api"] == "responses"
    assert rows["story"]["api"] == "chat" and rows["default"]["api"] == "any"


@pytest.mark.parametrize("how", ["header", "tag", "model"])
def test_selection_by_header_tag_or_model(mock, how):
    body = {"model": "grok-4.3", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "stream": True}
    headers = {}
    if how == "header":
        headers["X-Mock-Scenario"] = "reasoning"
    elif how == "tag":
        body["input"][0]["content"][0]["text"] = "hi [mock:reasoning]"
    else:
        body["model"] = "mock-reasoning"
    test_id = uuid.uuid4().hex
    r = create(mock, body, **headers, **{"X-Mock-Test-Id": test_id})
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
    assert "response.reasoning_summary_text.delta" in [k for k, _ in payloads(r.content)]
    assert mock.journal(test_id)[-1]["scenario"] == "responses_reasoning"
    assert mock.wait_ended(timeout=5, test_id=test_id)["ended"] == "complete"


def test_a_chat_only_scenario_is_refused_and_http_errors_apply(mock):
    refused = create(mock, {"model": "m", "input": "x"}, **{"X-Mock-Scenario": "tool_call"})
    assert refused.status_code == 400 and "no responses form" in refused.json()["error"]
    limited = create(mock, {"model": "m", "input": "x", "stream": True}, **{"X-Mock-Scenario": "http_429"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"


def test_model_is_echoed_in_nested_responses_and_whole_answers_sum_the_stream(mock):
    streamed = create(mock, {"model": "my-model", "input": "x", "stream": True}, **{"X-Mock-Scenario": "story"})
    final = payloads(streamed.content)[-1][1]["response"]
    assert final["model"] == "my-model"
    whole = create(mock, {"model": "my-model", "input": "x"}, **{"X-Mock-Scenario": "story"})
    assert whole.json() == final


def test_faults_write_responses_events(mock):
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"malformed_after": 2, "error_after": 4, "error": "nope"}, times=1)
    r = create(mock, {"model": "m", "input": "x", "stream": True}, **{"X-Mock-Scenario": "story", "X-Mock-Test-Id": test_id})
    blocks = events(r.content)
    assert blocks[2].startswith(b"event: response.output_text.delta\ndata: {") and not blocks[2].endswith(b"}")
    assert blocks[-1] == (b'event: error\ndata: {"type":"error","code":"server_error","message":"nope","param":null,'
                          b'"sequence_number":4}')
    assert mock.wait_ended(timeout=5, test_id=test_id)["ended"] == "fault"


def test_no_terminal_event_is_a_fault_in_the_journal(mock):
    test_id = uuid.uuid4().hex
    r = create(mock, {"model": "m", "input": "x", "stream": True}, **{"X-Mock-Scenario": "no_terminal", "X-Mock-Test-Id": test_id})
    assert r.status_code == 200 and b"response.completed" not in r.content
    assert mock.wait_ended(timeout=5, test_id=test_id)["ended"] == "fault"


def test_stored_responses_get_delete_and_previous_response_id(mock):
    first = create(mock, {"model": "m", "input": "remember me"}).json()
    got = requests.get(mock.base + "/responses/" + first["id"], headers=AUTH)
    assert got.json() == first and first["output"][0]["content"][0]["text"] == "Mock answer to: remember me"
    follow = create(mock, {"model": "m", "input": "and now", "previous_response_id": first["id"]}).json()
    assert follow["previous_response_id"] == first["id"]
    streamed = requests.get(mock.base + "/responses/%s?stream=true&starting_after=3" % first["id"], headers=AUTH)
    assert [p["sequence_number"] for _, p in payloads(streamed.content)][0] == 4
    assert payloads(streamed.content)[-1][0] == "response.completed"
    assert requests.delete(mock.base + "/responses/" + first["id"], headers=AUTH).json()["deleted"] is True
    assert requests.get(mock.base + "/responses/" + first["id"], headers=AUTH).status_code == 404
    missing = create(mock, {"model": "m", "input": "x", "previous_response_id": first["id"]})
    assert missing.status_code == 404 and "not found" in missing.json()["error"]


def test_synthetic_responses_stream(mock):
    r = create(mock, {"model": "bench", "input": "chunks=5 size=4", "stream": True})
    kinds = [k for k, _ in payloads(r.content)]
    assert kinds.count("response.output_text.delta") == 5 and kinds[-1] == "response.completed"
    numbers = [p["sequence_number"] for _, p in payloads(r.content)]
    assert numbers == list(range(len(numbers)))
    final = payloads(r.content)[-1][1]["response"]
    assert final["usage"]["output_tokens"] == 5 and final["output"][0]["content"][0]["text"] == (
        "abcd" "bcde" "cdef" "defg" "efgh")


def test_event_lines_belong_to_responses_recordings_only(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"format": "mock-recording/1"}\n{"event": "x", "data": {"a": 1}}\n')
    with pytest.raises(RecordingError, match=r"bad.jsonl:2: .*api \"responses\""):
        load_file(str(path))
    good = tmp_path / "good.jsonl"
    good.write_text('{"format": "mock-recording/1", "api": "responses"}\n'
                    '{"event": "response.completed", "data": {"type": "response.completed", "response": {"id": "r"}}}\n')
    recording = load_file(str(good))
    assert recording.events[0].done and recording.body
