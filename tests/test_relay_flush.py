"""Each event reaches the client while the upstream is still open, not when its stream ends.

The mock plays the recorded story at its recorded pace (one event every ~40 ms, so one upstream
read each) and then falls silent for ten minutes without ending: every event the client has by then
was sent as it came. A relay that held a read back until a later one (or until the end) passes every
byte-for-byte test and fails this one.
"""

import uuid

import pytest

from tests import hardening_helpers as hh
from tests.wire import CLIENT_MODEL, UPSTREAM_MODEL, chat_body, direct


@pytest.mark.parametrize("events", [6, 7])
def test_every_event_arrives_before_the_upstream_goes_silent(gateway, mock, key, events):
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"stall_after": events})
    try:
        with hh.open_stream(gateway, key, chat_body(), **{"X-Mock-Scenario": "story", "X-Mock-Speed": "1",
                                                          "X-Mock-Test-Id": test_id}) as s:
            got = hh.read_until(s, b"data: {", count=events, timeout=20)
            assert got.startswith(b"HTTP/1.1 200 OK")
            assert got.count(b"data: {") == events
            assert b"[DONE]" not in got
            assert mock.journal(test_id)[-1]["ended"] is None  # the upstream is still open and silent
    finally:
        mock.clear_faults(test_id)


def test_an_http_1_0_client_gets_the_events_unframed_until_the_connection_closes(gateway, mock, key):
    """HTTP/1.0 has no chunked encoding: the events go out as they are, and the end of the response
    is the end of the connection. (Later events of an HTTP/1.1 stream are written as chunks straight
    to the socket; an HTTP/1.0 stream must never get that framing.)"""
    story = direct(mock, chat_body(model="grok-4.20-non-reasoning"), {"X-Mock-Scenario": "story"})
    assert story.status_code == 200
    with hh.open_stream(gateway, key, chat_body(), version="HTTP/1.0",
                        **{"X-Mock-Scenario": "story", "X-Mock-Speed": "1"}) as s:
        raw = hh.read_all(s)  # until the gateway closes the connection
    head, _, got = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200"  # (tornado names its own version, HTTP/1.1, in the reply)
    assert b"transfer-encoding" not in head.lower()
    assert got == story.content.replace(UPSTREAM_MODEL, CLIENT_MODEL)


def test_keepalives_go_out_while_the_upstream_is_silent(make_gateway, mock):
    """A keep-alive is written by the sweep, outside any upstream read: it goes out at once, not with
    the next socket_action of the upstream's transfer (here: none until a libcurl timer, ten seconds
    away, or the idle timeout, a minute away). Three are due within 0.3 s; the test waits 5 s."""
    g, key = make_gateway(settings={"keepalive_interval": 0.1, "idle_timeout": 60})
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"stall_after": 2})
    try:
        with hh.open_stream(g, key, chat_body(), **{"X-Mock-Scenario": "story", "X-Mock-Test-Id": test_id}) as s:
            got = hh.read_until(s, b": keep-alive\n\n", count=3, timeout=5)
            assert got.count(b"data: {") == 2
            assert mock.journal(test_id)[-1]["ended"] is None  # the upstream is still open and silent
    finally:
        mock.clear_faults(test_id)
