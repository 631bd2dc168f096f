"""mock_upstream/player.py's timing pieces called directly, no server: `pause`, `Clock` and `origin`.

tests/test_mock_player.py plays whole plans over the wire; there, a timeline that starts at the
request's arrival and one that starts a few milliseconds later (when the headers are flushed) are
told apart only by an upper bound on a duration, which this suite does not assert on a shared
machine. Here the timeline is plain arithmetic on IOLoop times and is checked exactly. The only
"handler" these functions read is its `gone` Event (and `arrived`): a real tornado Event stands in.
Durations are asserted as lower bounds only.
"""

import asyncio

import pytest
from tornado.ioloop import IOLoop
from tornado.locks import Event

from mock_upstream.plan import Plan
from mock_upstream.player import ClientGone, Clock, origin, pause


class Handler:
    """What pause(), Clock.wait() and origin() read of an ApiHandler."""

    def __init__(self, gone: bool = False, **attrs):
        self.gone = Event()
        if gone:
            self.gone.set()
        self.__dict__.update(attrs)


def run(fn):
    """Run the coroutine function `fn` on a fresh event loop (IOLoop.current() is that loop)."""
    return asyncio.run(asyncio.wait_for(fn(), timeout=10))


# -- pause --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", [0.0, -0.5, -2.0])
@pytest.mark.parametrize("gone", [False, True])
def test_a_pause_of_zero_or_less_returns_at_once(seconds, gone):
    """Nothing to wait for: it neither gives up the loop nor looks at `gone` (a step that is already
    due is written, and the write finds out whether the client is still there)."""

    async def check():
        coro = pause(Handler(gone), seconds)
        try:
            with pytest.raises(StopIteration) as stop:
                coro.send(None)  # the first step of the coroutine must already be its end
            assert stop.value.value is None
        finally:
            coro.close()

    run(check)


def test_a_pause_waits_at_least_its_time_while_the_client_stays():
    async def check():
        start = IOLoop.current().time()
        assert await pause(Handler(), 0.05) is None
        return IOLoop.current().time() - start

    assert run(check) >= 0.05


@pytest.mark.parametrize("seconds", [0.001, 600.0])
def test_a_pause_ends_with_client_gone_when_the_client_has_left(seconds):
    async def check():
        with pytest.raises(ClientGone):
            await pause(Handler(gone=True), seconds)

    run(check)


def test_a_long_pause_wakes_up_when_the_client_leaves():
    async def check():
        handler = Handler()
        IOLoop.current().call_later(0.01, handler.gone.set)
        with pytest.raises(ClientGone):
            await pause(handler, 600.0)  # run() gives up after 10 s

    run(check)


# -- Clock --------------------------------------------------------------------------------------------

def test_a_clock_starts_at_its_origin_when_given_one():
    async def check():
        assert Clock(2.0, 100.25).due == 100.25
        assert Clock(0.0, 0.0).due == 0.0

    run(check)


def test_a_clock_without_origin_starts_now():
    async def check():
        before = IOLoop.current().time()
        clock = Clock(1.0)
        assert before <= clock.due <= IOLoop.current().time()

    run(check)


def test_each_step_is_due_at_the_origin_plus_the_scaled_delays_so_far():
    """Two delays of 30 ms at speed 2, from a timeline that started now: due at +60 and +120 ms,
    whatever the timers' overshoot (the due times are sums, not re-measured from each wake-up)."""

    async def check():
        start = IOLoop.current().time()
        clock = Clock(2.0, start)
        await clock.wait(Handler(), 0.030)
        assert clock.due == start + 0.030 * 2.0
        first = IOLoop.current().time()
        await clock.wait(Handler(), 0.030)
        assert clock.due == start + 0.030 * 2.0 + 0.030 * 2.0
        return first - start, IOLoop.current().time() - start

    first, second = run(check)
    assert first >= 0.060 and second >= 0.120


def test_a_clock_behind_its_timeline_does_not_wait_and_advances_by_the_scaled_delay():
    """Steps already due (the timeline started long ago) are let through at once, even after the
    client left: the write, not the clock, finds that out."""

    async def check():
        start = IOLoop.current().time() - 100.0
        clock = Clock(3.0, start)
        coro = clock.wait(Handler(gone=True), 0.5)
        try:
            with pytest.raises(StopIteration):
                coro.send(None)
        finally:
            coro.close()
        assert clock.due == start + 0.5 * 3.0

    run(check)


# -- origin -------------------------------------------------------------------------------------------

def test_the_timeline_starts_at_the_arrival_plus_held_back_headers():
    async def check():
        assert origin(Handler(arrived=1000.0), Plan(slow_headers=0.25)) == 1000.25
        assert origin(Handler(arrived=1000.0), Plan()) == 1000.0

    run(check)


def test_without_an_arrival_time_the_timeline_starts_now():
    async def check():
        before = IOLoop.current().time()
        start = origin(Handler(), Plan(slow_headers=0.25))
        assert before + 0.25 <= start <= IOLoop.current().time() + 0.25

    run(check)
