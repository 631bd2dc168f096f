"""Runtime faults, scoped by X-Mock-Test-Id, and the faults scenarios carry."""

import json
import uuid

import pytest
import requests

from tests.mock_helpers import MockError, dechunk, mock_headers, raw_exchange, raw_post, start_mock

AUTH = {"Authorization": "Bearer test-key-0123456789"}
BODY = {"model": "my-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def mock():
    with start_mock("--speed", "0") as m:
        yield m


@pytest.fixture
def test_id():
    return "t-" + uuid.uuid4().hex[:8]


def post(mock, test_id=None, scenario="story", body=BODY, path="/chat/completions"):
    session = requests.Session()
    session.trust_env = False
    return session.post(mock.base + path, json=body, timeout=10, headers={**AUTH, **mock_headers(scenario, test_id)})


def events(content: bytes) -> list:
    return [e for e in content.split(b"\n\n") if e]


def test_fault_applies_only_to_its_test_id_and_runs_out(mock, test_id):
    mock.set_fault(test_id, {"error_after": 2}, times=1)
    assert events(post(mock, "someone-else").content)[-1] == b"data: [DONE]"
    faulted = events(post(mock, test_id).content)
    assert len(faulted) == 3 and json.loads(faulted[-1][6:])["code"] == "Internal error"
    assert mock.journal(test_id)[-1]["ended"] == "fault"
    assert events(post(mock, test_id).content)[-1] == b"data: [DONE]"


def test_fault_without_times_stays_until_deleted(mock, test_id):
    mock.set_fault(test_id, {"status": 429, "retry_after": 7})
    for _ in range(2):
        r = post(mock, test_id)
        assert r.status_code == 429 and r.headers["Retry-After"] == "7" and set(r.json()) == {"code", "error"}
    mock.clear_faults(test_id)
    assert post(mock, test_id).status_code == 200


def test_status_fault_on_models_and_images(mock, test_id):
    mock.set_fault(test_id, {"status": 503, "error": "overloaded"}, times=2)
    session = requests.Session()
    session.trust_env = False
    models = session.get(mock.base + "/models", headers={**AUTH, "X-Mock-Test-Id": test_id})
    assert models.status_code == 503 and models.json()["error"] == "overloaded"
    images = post(mock, test_id, None, {"prompt": "a cat"}, "/images/generations")
    assert images.status_code == 503


def test_disconnect_after_n_events(mock, test_id):
    mock.set_fault(test_id, {"disconnect_after": 5}, times=1)
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("story", test_id)}))
    head, body, complete = dechunk(raw)
    assert complete is False and len(events(body)) == 5
    assert mock.wait_ended(test_id=test_id)["ended"] == "fault"


def test_disconnect_after_ms_cuts_a_stall(mock, test_id):
    mock.set_fault(test_id, {"disconnect_after_ms": 50}, times=1)
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("stall", test_id)}))
    assert dechunk(raw)[2] is False
    assert mock.wait_ended(test_id=test_id)["ended"] == "fault"


def test_disconnect_after_ms_on_a_non_stream_answer(mock, test_id):
    mock.set_fault(test_id, {"disconnect_after_ms": 1}, times=1)
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", dict(BODY, stream=False),
                                          {**AUTH, **mock_headers("story", test_id)}))
    assert raw == b""
    assert mock.wait_ended(test_id=test_id)["ended"] == "fault"


def test_disconnect_after_ms_without_chunked_framing(mock, test_id):
    mock.set_fault(test_id, {"disconnect_after_ms": 50, "close_delimited": True}, times=1)
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("stall", test_id)}))
    head, body, complete = dechunk(raw)
    assert complete is None and len(events(body)) == 3
    assert mock.wait_ended(test_id=test_id)["ended"] == "fault"


def test_stall_after_then_end_without_done(mock, test_id):
    mock.set_fault(test_id, {"stall_after": 4, "stall_ms": 1}, times=1)
    got = events(post(mock, test_id).content)
    assert len(got) == 4 and b"[DONE]" not in got[-1]
    assert mock.wait_ended(test_id=test_id)["ended"] == "fault"


def test_malformed_ping_and_utf8_split(mock, test_id):
    mock.set_fault(test_id, {"malformed_after": 1, "ping_every": 2}, times=1)
    got = events(post(mock, test_id).content)
    assert got[1].startswith(b'data: {"id":"chatcmpl-mock-malformed"')
    with pytest.raises(ValueError):
        json.loads(got[1][6:])
    assert got.count(b": ping") >= 5 and got[-1] == b"data: [DONE]"
    mock.set_fault(test_id, {"utf8_split": True}, times=1)
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("utf8_split", test_id)}))
    assert dechunk(raw)[2] is True


def test_close_delimited_and_slow_headers(mock, test_id):
    mock.set_fault(test_id, {"no_chunked": True, "slow_headers_ms": 1}, times=1)
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("story", test_id)}))
    head, body, complete = dechunk(raw)
    assert complete is None and body.endswith(b"data: [DONE]\n\n")


def test_fault_can_choose_the_scenario_and_any_test_id(mock, test_id):
    mock.set_fault(test_id, {"scenario": "http_500"}, times=1)
    assert post(mock, test_id, scenario=None).status_code == 500
    assert mock.journal(test_id)[-1]["scenario"] == "http_500"


def test_bad_faults_are_refused(mock):
    for body in ({"test_id": "x", "fault": {"nope": 1}}, {"fault": {}}, {"test_id": "x", "fault": {"status": 200}},
                 {"test_id": "x", "fault": {"scenario": "missing"}}, {"test_id": "x", "fault": {}, "times": 0}):
        with pytest.raises(MockError, match="400"):
            mock.admin("POST", "faults", body)


def test_scenarios_with_faults_from_the_toml(mock):
    r = post(mock, scenario="story_429")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    got = events(post(mock, scenario="story_error_after_5").content)
    assert len(got) == 6 and b"[DONE]" not in got[-1]
    assert b": ping" in post(mock, scenario="story_ping").content
