"""Plays a Plan on a request handler: status, headers, timed writes, actions; says how it ended.

The handler provides `gone` (a tornado Event set when the client leaves or the mock drops the link),
`dropped`, `drop()`, `count_event()` and the usual RequestHandler methods. `play()` returns
"complete" (a stream that sent [DONE], or any whole non-stream response), "fault" (the stream ended
without [DONE]: error event, stall, disconnect) or "client_closed".
"""

import datetime
import http.client

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.util import TimeoutError as TornadoTimeout

from mock_upstream.plan import DISCONNECT, STALL, Plan

CLIENT_CLOSED = "client_closed"


class ClientGone(Exception):
    """The client went away (or the mock dropped the connection) during a pause."""


async def pause(handler, seconds: float) -> None:
    """Sleep, but wake up as soon as the client leaves."""
    if seconds <= 0:
        return
    try:
        await handler.gone.wait(timeout=datetime.timedelta(seconds=seconds))
    except TornadoTimeout:
        return
    raise ClientGone()


class Clock:
    """Recorded delays on one timeline: each step is due at the sum of the delays so far, so
    timer overshoot does not accumulate over a long stream. The timeline starts at `origin` (an
    IOLoop time): when the request arrived, as the recorder measured the first delay from it."""

    def __init__(self, speed: float, origin: float | None = None):
        self.speed = speed
        self.due = IOLoop.current().time() if origin is None else origin

    async def wait(self, handler, delay: float) -> None:
        self.due += delay * self.speed
        await pause(handler, self.due - IOLoop.current().time())


def origin(handler, plan: Plan) -> float:
    """When the stream's timeline starts: the request's arrival, plus a fault's held-back headers."""
    return getattr(handler, "arrived", IOLoop.current().time()) + plan.slow_headers


async def play(handler, plan: Plan, speed: float) -> str:
    try:
        await pause(handler, plan.slow_headers)
        if not plan.stream:
            return await _play_body(handler, plan, speed)
        if plan.close_delimited:
            return await _play_raw(handler, plan, speed)
        return await _play_stream(handler, plan, speed)
    except (ClientGone, StreamClosedError):
        return "fault" if handler.dropped else CLIENT_CLOSED


async def _play_body(handler, plan: Plan, speed: float) -> str:
    await pause(handler, plan.body_delay * speed)
    if plan.disconnect_at is not None:
        await pause(handler, plan.disconnect_at)
        handler.drop()
        return "fault"
    handler.set_status(plan.status)
    for name, value in plan.headers.items():
        handler.set_header(name, value)
    if "Content-Type" not in plan.headers:
        handler.set_header("Content-Type", "application/json")
    await handler.finish(plan.body)
    return "complete"


async def _play_stream(handler, plan: Plan, speed: float) -> str:
    handler.set_status(plan.status)
    handler.set_header("Content-Type", "text/event-stream")
    handler.set_header("Cache-Control", "no-cache")
    for name, value in plan.headers.items():
        handler.set_header(name, value)
    handler.send_at_once()
    await handler.flush()
    if plan.disconnect_at is not None:
        handler.drop_later(plan.disconnect_at)
    done = False
    clock = Clock(speed, origin(handler, plan))
    for step in plan.steps:
        if step.delay and speed:
            await clock.wait(handler, step.delay)
        if handler.dropped:
            return "fault"
        if step.action == DISCONNECT:
            handler.drop()
            return "fault"
        if step.action == STALL:
            await pause(handler, step.hold)
            break
        handler.write(step.data)
        if step.event:
            handler.count_event()
        done = done or step.done
        await handler.flush()
    if handler.dropped:
        return "fault"
    handler.outcome = "complete" if done else "fault"
    await handler.finish()
    return handler.outcome


async def _play_raw(handler, plan: Plan, speed: float) -> str:
    """No chunked framing, no Content-Length: HTTP/1.1 body delimited by closing the connection."""
    stream = handler.take_stream()
    handler.send_at_once(stream)
    reason = http.client.responses.get(plan.status, "Unknown")
    head = [f"HTTP/1.1 {plan.status} {reason}", "Content-Type: text/event-stream", "Cache-Control: no-cache"]
    head += [f"{k}: {v}" for k, v in plan.headers.items() if k.lower() not in ("content-type", "cache-control")]
    head.append("Connection: close")
    done = False
    timer = None
    if plan.disconnect_at is not None:
        timer = IOLoop.current().call_later(plan.disconnect_at, handler.drop_detached, stream)
    try:
        await stream.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        clock = Clock(speed, origin(handler, plan))
        for step in plan.steps:
            if step.delay and speed:
                await clock.wait(handler, step.delay)
            if step.action == DISCONNECT:
                return "fault"
            if step.action == STALL:
                await pause(handler, step.hold)
                break
            await stream.write(step.data)
            if step.event:
                handler.count_event()
            done = done or step.done
        return "complete" if done else "fault"
    finally:
        if timer is not None:
            IOLoop.current().remove_timeout(timer)
        stream.close()
