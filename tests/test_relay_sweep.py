"""The sweep's decision for one stream (StreamRelay.due) at the exact boundaries, which no wire test
can reach (two clock readings are never exactly a timeout apart): a timeout is passed once strictly
more than its seconds have gone by, and a keep-alive is due once keepalive_interval has gone by.

The wire tests (test_timeouts.py, test_hardening_observability.py, test_responses_relay.py) check
what each decision does to a real stream; here the relay is only built, never started, and the
clock is the `now` the sweep passes in.
"""

import math
import time
import types

import pytest

from tornado_grok.config import Config
from tornado_grok.dialects import ChatDialect
from tornado_grok.relay import StreamRelay

START = 1000.0
C = Config(first_event_timeout=30.0, idle_timeout=10.0, total_timeout=100.0, keepalive_interval=5.0)


def after(t: float) -> float:
    """The first clock reading after `t`."""
    return math.nextafter(t, math.inf)


def before(t: float) -> float:
    return math.nextafter(t, -math.inf)


@pytest.fixture
def relay():
    r = StreamRelay(None, types.SimpleNamespace(config=C), "m", "m", ChatDialect())
    r.started = r.last_read = r.last_write = START
    return r


def quiet(relay, now: float, **state) -> str | None:
    """due(now) with the last write at `now` (no keep-alive owed) and `state` set on the relay."""
    for name, value in state.items():
        setattr(relay, name, value)
    relay.last_write = now
    return relay.due(now, C)


def test_first_event_timeout_is_passed_strictly_after_its_seconds(relay):
    assert quiet(relay, START + 30.0) is None
    assert quiet(relay, after(START + 30.0)) == "first_event"


def test_idle_timeout_counts_from_the_last_read_once_an_event_came(relay):
    state = {"first_event_at": START + 1.0, "last_read": START + 50.0}
    assert quiet(relay, START + 60.0, **state) is None
    assert quiet(relay, after(START + 60.0), **state) == "idle"
    # Before the first event the idle gap does not count, only the first-event timeout.
    assert quiet(relay, START + 25.0, first_event_at=None, last_read=START + 1.0) is None


def test_a_stream_paused_by_backpressure_is_not_idle(relay):
    """(`call` stands for the upstream transfer, of which only `paused` is read.)"""
    state = {"first_event_at": START + 1.0, "last_read": START + 50.0}
    assert quiet(relay, START + 70.0, call=types.SimpleNamespace(paused=True), **state) is None
    assert quiet(relay, START + 70.0, call=types.SimpleNamespace(paused=False), **state) == "idle"


def test_total_timeout_is_passed_strictly_after_its_seconds_however_busy_the_stream(relay):
    assert quiet(relay, START + 100.0, first_event_at=START + 1.0, last_read=START + 99.0) is None
    assert quiet(relay, after(START + 100.0), first_event_at=START + 1.0, last_read=START + 99.0) == "total"


def test_the_first_event_timeout_is_named_before_the_total_one(relay):
    slow = Config(first_event_timeout=200.0, total_timeout=100.0)
    relay.last_write = START + 300.0
    assert relay.due(START + 150.0, slow) == "total"
    assert relay.due(START + 250.0, slow) == "first_event"


def test_a_keepalive_is_due_once_the_interval_has_gone_by_since_the_last_write(relay):
    relay.first_event_at = START + 1.0
    relay.last_read = relay.last_write = START + 50.0
    assert relay.due(before(START + 55.0), C) is None
    assert relay.due(START + 55.0, C) == "keepalive"


class Transfer:
    """Stands for the upstream transfer (upstream.UpstreamCall), of which the relay reads `paused`
    and calls resume()."""

    def __init__(self):
        self.paused = True

    def resume(self):
        self.paused = False


def test_after_a_backpressure_pause_the_idle_gap_counts_from_the_resume(relay):
    """A client that read nothing for longer than idle_timeout paused the upstream; once it drains,
    the sweep right after the resume must not take the old last read for an idle upstream. (The
    real clock: resume_upstream reads it.)"""
    now = time.monotonic()
    relay.started = relay.first_event_at = relay.last_read = now - 40.0
    relay.call = Transfer()
    assert quiet(relay, now) is None  # paused: not idle
    relay.resume_upstream()
    assert not relay.call.paused
    assert quiet(relay, time.monotonic()) is None
    assert quiet(relay, relay.last_read + 10.0) is None
    assert quiet(relay, after(relay.last_read + 10.0)) == "idle"
