"""Every upstream fault the mock can play, streamed and not: the client gets the documented status or
an in-band error event, never [DONE] after a failure, never a hung connection; afterwards the gateway
holds no upstream transfer, stream, request or concurrency slot (GET /debug/state), and the mock saw
its upstream request end.
"""

import json
import uuid

import pytest

from tests import hardening_helpers as hh
from tests.wire import chat_body, post

SETTINGS = {"first_event_timeout": 1.0, "idle_timeout": 0.5}

# name: (scenario, runtime fault, X-Mock-Speed, (stream status, stream ends with), whole status)
CASES = {
    "status_500": (None, {"status": 500}, None, (502, "error"), 502),
    "status_429": (None, {"status": 429, "retry_after": 3}, None, (429, "error"), 429),
    "error_event_mid_stream": ("error_mid_stream", None, None, (200, "error"), 502),
    "disconnect_after_3": ("disconnect", None, None, (200, "error"), 502),
    "disconnect_after_1": (None, {"disconnect_after": 1}, None, (200, "error"), 200),
    "stall_past_idle_timeout": ("stall", None, None, (200, "error"), 504),
    "malformed_json_chunk": ("malformed", None, None, (200, "error"), 200),
    "no_chunked_framing": ("no_chunked", None, None, (200, "done"), 200),
    "no_chunked_cut_short": ("story", {"close_delimited": True, "disconnect_after": 2}, None, (200, "error"), 200),
    "slow_headers_past_timeout": (None, {"slow_headers_ms": 3000}, None, (504, "error"), 504),
    # The client's 200 goes out with the first event: a first-event timeout is still a 504.
    "slow_first_event_past_timeout": ("slow_first", None, "1", (504, "error"), 504),
}
# The cases the gateway itself ends by a timeout (its access log says "timeout", not "upstream_error").
TIMEOUTS = {"stall_past_idle_timeout", "slow_headers_past_timeout", "slow_first_event_past_timeout"}
# Whole (non-streaming) answers are not affected by faults that only exist inside a stream (the mock
# plays mid-stream faults on streams only): those rows expect 200, and are still checked for leftovers.


@pytest.fixture(scope="module")
def fault_gateway(mock, tmp_path_factory):
    g, key = hh.start(str(tmp_path_factory.mktemp("faults")), mock.base, SETTINGS)
    yield g, key
    g.stop()


@pytest.fixture(scope="module")
def refused_gateway(tmp_path_factory):
    url = "http://127.0.0.1:%d/v1" % hh.free_port()
    g, key = hh.start(str(tmp_path_factory.mktemp("refused")), url, SETTINGS)
    yield g, key
    g.stop()


def check_stream(r, status: int, ending: str) -> None:
    assert r.status_code == status, r.content
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert r.content.endswith(b"\n\n"), r.content[-200:]
    last = r.content.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    if ending == "done":
        assert last == b"data: [DONE]"
        return
    assert b"data: [DONE]" not in r.content
    assert last.startswith(b'data: {"error":"API error: '), last
    json.loads(last[len(b"data: "):])
    if status != 200:
        assert r.content.count(b"data: ") == 1  # nothing was sent before the error: one event


def check_whole(r, status: int) -> None:
    assert r.status_code == status, r.content
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    body = r.json()
    if status == 200:
        assert body["object"] == "chat.completion"
    else:
        assert body["error"]["message"].startswith("API error: ")
        assert body["error"]["type"] in ("upstream_error", "timeout_error", "rate_limit_error")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("name", list(CASES))
def test_fault(fault_gateway, mock, name, stream):
    gateway, key = fault_gateway
    scenario, fault, speed, (s_status, s_ending), w_status = CASES[name]
    test_id = "matrix-" + uuid.uuid4().hex
    headers = hh.auth(key, **{"X-Mock-Test-Id": test_id})
    if scenario:
        headers["X-Mock-Scenario"] = scenario
    if speed:
        headers["X-Mock-Speed"] = speed
    if fault:
        mock.set_fault(test_id, fault)
    log_start = len(gateway.stderr_lines)
    try:
        r = post(gateway.base + "/chat/completions", chat_body(stream=stream), headers, timeout=15)
    finally:
        mock.clear_faults(test_id)
    if stream:
        check_stream(r, s_status, s_ending)
    else:
        check_whole(r, w_status)
    if r.status_code == 429:
        assert r.headers["Retry-After"] == "3"
    failed = (s_ending == "error") if stream else (w_status != 200)
    line = hh.access_line(gateway, r.headers["X-Request-Id"])
    timed_out = name in TIMEOUTS and (stream or w_status == 504)
    assert line["ended"] == ("timeout" if timed_out else "upstream_error" if failed else "completed"), line
    mock.wait_ended(test_id=test_id, timeout=5)  # the upstream request is over, not left running
    hh.wait_idle(gateway)
    # This fault, and nothing else, was handled without a traceback in the log.
    logged = "".join(gateway.stderr_lines[log_start:])
    assert "Traceback" not in logged, logged[-3000:]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_connection_refused(refused_gateway, stream):
    gateway, key = refused_gateway
    log_start = len(gateway.stderr_lines)
    r = post(gateway.base + "/chat/completions", chat_body(stream=stream), hh.auth(key), timeout=15)
    if stream:
        check_stream(r, 502, "error")
        assert r.content == b'data: {"error":"API error: upstream unreachable"}\n\n'
    else:
        check_whole(r, 502)
        assert r.json()["error"]["code"] == "upstream_unreachable"
    assert hh.access_line(gateway, r.headers["X-Request-Id"])["ended"] == "upstream_error"
    hh.wait_idle(gateway)
    logged = "".join(gateway.stderr_lines[log_start:])
    assert "Traceback" not in logged, logged[-3000:]


def test_debug_state_is_off_by_default(gateway):
    import requests
    r = requests.get(gateway.url + "/debug/state", timeout=5)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"

