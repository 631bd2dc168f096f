"""How long, and how many times, the gateway tries a call to Redis (health_redis.py).

patient_timeout, on a virtual clock: when a call to Redis is given up on.

Its contract: on an idle loop a call that gets no answer is given up on `seconds` after it began; a
deadline timer that fires late (the loop was busy, an answer may be waiting unread) extends the
deadline by `seconds` from then; never past PATIENCE * `seconds` after the call began. Wall-clock
time on a shared machine cannot check that exactly; a loop whose clock the test moves can. The
clock moves only between loop turns, by a step the test picks: a small step is an idle loop, a
large one a loop that was busy for that long.

docs/ratelimits.md ("When Redis is unreachable or hangs") gives the numbers checked here: the
extension stops 8 timeouts after the call began, redis-py's own limit per read is 9 timeouts, and a
closed connection is retried once, on a new connection.
"""

import asyncio
import socket
import threading

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tornado_grok.health_redis import LATE, connect, patient_timeout

PATIENCE = 8  # timeouts (docs/ratelimits.md)

SECONDS = 0.05
IDLE_STEP = LATE / 4  # the loop turns often: a timer is never late by more than this


def given_up_after(steps) -> float:
    """Virtual seconds from the start of a call that never answers until patient_timeout gives up;
    `steps(n)` is how far the clock moves before loop turn n."""
    loop = asyncio.new_event_loop()
    clock = [1000.0]
    loop.time = lambda: clock[0]

    async def ticker():
        n = 0
        while True:
            clock[0] += steps(n)
            n += 1
            await asyncio.sleep(0)

    async def hung_call():
        tick = asyncio.ensure_future(ticker())
        began = clock[0]
        try:
            with pytest.raises(TimeoutError):
                async with patient_timeout(SECONDS):
                    await asyncio.sleep(10)  # Redis never answers (in 10 virtual s: a broken deadline fails fast)
            return clock[0] - began
        finally:
            tick.cancel()

    try:
        return loop.run_until_complete(hung_call())
    finally:
        loop.close()


def test_an_idle_loop_gives_up_after_the_timeout():
    assert SECONDS <= given_up_after(lambda n: IDLE_STEP) < SECONDS + 4 * IDLE_STEP


def test_a_late_timer_extends_the_deadline_by_the_timeout_from_when_it_fired():
    # The loop is busy for 0.2 s early in the call, then idle: the timer due at 0.05 fires at ~0.2.
    busy = 0.2
    elapsed = given_up_after(lambda n: busy if n == 3 else IDLE_STEP)
    fired = busy + 4 * IDLE_STEP
    assert fired + SECONDS <= elapsed < fired + SECONDS + 4 * IDLE_STEP


def test_a_loop_busy_all_along_gives_up_at_the_patience_bound():
    # Every turn takes 13.7 ms: each timer fires 4 turns (54.8 ms) after it was set, late by 4.8 ms,
    # and is extended until the call is PATIENCE * 50 ms old: at the 8th firing, 438.4 ms.
    step = 0.0137
    late_by = 4 * step - SECONDS
    assert late_by > LATE
    elapsed = given_up_after(lambda n: step)
    bound = PATIENCE * SECONDS
    assert bound <= elapsed < bound + 4 * step + step


def test_redis_py_gives_up_a_read_after_nine_timeouts():
    # The backstop for a cancellation lost while a connection is opened (connect's comment).
    client = connect("redis://127.0.0.1:1/0", timeout=0.05)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == pytest.approx(9 * 0.05)


def test_a_redis_that_closes_every_connection_is_tried_twice_per_call():
    """A closed connection is retried once on a new one (a restarted Redis), and not again."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def close_each():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # the test closed the listening socket
                return
            accepted.append(conn)
            conn.recv(1024)  # the client's first command
            conn.close()

    thread = threading.Thread(target=close_each, daemon=True)
    thread.start()

    async def call():
        client = connect("redis://127.0.0.1:%d/0" % server.getsockname()[1], timeout=5.0)
        try:
            with pytest.raises(RedisConnectionError):
                await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(call())
    finally:
        server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        server.close()
        thread.join(5)
    assert not thread.is_alive()
    assert len(accepted) == 2
