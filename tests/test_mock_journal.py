"""The journal: what the mock saw, masked; clearing; waiting for entries without sleeping."""

import threading

import pytest
import requests

from tests.mock_helpers import mock_headers, start_mock

KEY = "xai-secret-abcdefghijklmnop"
BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def mock():
    with start_mock("--speed", "0") as m:
        yield m


def session():
    s = requests.Session()
    s.trust_env = False
    return s


def test_entries_mask_secrets_and_keep_the_body(mock):
    session().post(mock.base + "/chat/completions", json=BODY,
                   headers={"Authorization": "Bearer " + KEY, "x-api-key": KEY, **mock_headers("story", "j-1")})
    entry = mock.wait_ended(test_id="j-1")
    assert entry["headers"]["authorization"] == "Bearer xai-…mnop"
    assert entry["headers"]["x-api-key"] == "xai-…mnop"
    assert KEY not in str(mock.journal())
    assert entry["body"] == BODY and entry["scenario"] == "story" and entry["test_id"] == "j-1"
    assert entry["method"] == "POST" and entry["path"] == "/v1/chat/completions"
    assert entry["ended"] == "complete" and entry["status"] == 200 and entry["events"] == 22


def test_models_and_images_and_refusals_are_journaled(mock):
    s = session()
    s.get(mock.base + "/models", headers={"Authorization": "Bearer k", "X-Mock-Test-Id": "j-2"})
    s.post(mock.base + "/images/generations", json={"prompt": "x"}, headers={"Authorization": "Bearer k", "X-Mock-Test-Id": "j-2"})
    s.get(mock.base + "/models", headers={"X-Mock-Test-Id": "j-2"})
    entries = mock.journal("j-2")
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("GET", "/v1/models", 200), ("POST", "/v1/images/generations", 200), ("GET", "/v1/models", 401)]
    assert all(e["ended"] == "complete" for e in entries)


def test_clear_keeps_seq_growing(mock):
    s = session()
    s.get(mock.base + "/models", headers={"Authorization": "Bearer k"})
    before = mock.journal()[-1]["seq"]
    mock.clear_journal()
    assert mock.journal() == []
    s.get(mock.base + "/models", headers={"Authorization": "Bearer k"})
    assert [e["seq"] for e in mock.journal()] == [before + 1]


def test_wait_for_an_entry_that_does_not_exist_yet(mock):
    s = session()
    s.get(mock.base + "/models", headers={"Authorization": "Bearer k"})
    next_seq = mock.journal()[-1]["seq"] + 1
    result = {}
    waiter = threading.Thread(target=lambda: result.update(mock.wait_ended(next_seq, timeout=20)))
    waiter.start()
    s.get(mock.base + "/models", headers={"Authorization": "Bearer k", "X-Mock-Test-Id": "j-3"})
    waiter.join(30)
    assert result["seq"] == next_seq and result["test_id"] == "j-3" and result["ended"] == "complete"


def test_wait_times_out(mock):
    with pytest.raises(TimeoutError):
        mock.wait_entry(10**9, timeout=0.05)


def test_journal_size_keeps_the_most_recent():
    with start_mock("--speed", "0", "--journal-size", "2") as small:
        s = session()
        for _ in range(4):
            s.get(small.base + "/models", headers={"Authorization": "Bearer k"})
        assert [e["seq"] for e in small.journal()] == [3, 4]
