"""The mock's speed factor stretches a recording's delays: at X-Mock-Speed 2 the story's twenty
40 ms gaps take at least twice their recorded time. (Only a lower bound is asserted: a busy
machine can make a stream slower, never faster.)"""

import time

import requests

from tests.mock_helpers import mock_headers

AUTH = {"Authorization": "Bearer test-key-0123456789"}


def arrival_span(mock, speed: str) -> float:
    """Seconds between the first and the last content event of the story stream, as read."""
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    seen = []
    with requests.post(mock.base + "/chat/completions", json=body, stream=True, timeout=30,
                       headers={**AUTH, **mock_headers("story"), "X-Mock-Speed": speed}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith(b'data: {') and b'"content"' in line:
                seen.append(time.monotonic())
    assert len(seen) == 20
    return seen[-1] - seen[0]


def test_speed_2_takes_at_least_twice_the_recorded_gaps(mock):
    recorded = 19 * 0.040  # the story's 19 gaps between its first and last content chunks
    assert arrival_span(mock, "2") >= 2 * recorded * 0.95
