"""The mock's speed factor stretches a recording's delays: at X-Mock-Speed 2 the story's twenty
content chunks, each recorded 40 ms after the one before (the first 40 ms after the request), take
at least twice their recorded time.

Only a lower bound is asserted, and on the one span a busy machine cannot shorten: from sending the
request to reading the last content chunk. (The mock keeps every write on one timeline from the
request's arrival, so a first chunk that a busy machine delays is followed by the others sooner:
the span between the first and last chunks can shrink, the span from the request cannot.)"""

import time

import requests

from tests.mock_helpers import mock_headers

AUTH = {"Authorization": "Bearer test-key-0123456789"}
RECORDED = 20 * 0.040  # from the request to the story's last content chunk, as recorded


def span_to_last_content(mock, speed: str) -> float:
    """Seconds from sending the request to reading the story's last content event."""
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    seen = []
    started = time.monotonic()
    with requests.post(mock.base + "/chat/completions", json=body, stream=True, timeout=30,
                       headers={**AUTH, **mock_headers("story"), "X-Mock-Speed": speed}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith(b'data: {') and b'"content"' in line:
                seen.append(time.monotonic())
    assert len(seen) == 20
    return seen[-1] - started


def test_speed_2_takes_at_least_twice_the_recorded_time(mock):
    assert span_to_last_content(mock, "2") >= 2 * RECORDED * 0.99  # 0.99: timer granularity
