"""Calls to the limiter and accounting backends off the response path: a request's concurrency
slot freed (release_slot), and one backend method called without awaiting it (backend_call)."""

from tornado.ioloop import IOLoop


def release_slot(gateway, decision) -> None:
    """Frees a request's concurrency slot (the gateway's in-flight count and the limiter's lease)."""
    if decision is not None:
        gateway.request_finished()
        if decision.lease is not None:
            backend_call(gateway.limiter, "release", decision)


def backend_call(backend, name: str, *args) -> None:
    """Calls a limiter or accounting method off the response path: an in-process backend's `<name>_now`
    at once (no task per call), else the async `<name>` on the IOLoop."""
    now = getattr(backend, name + "_now", None)
    if now is not None:
        now(*args)
    else:
        IOLoop.current().add_callback(getattr(backend, name), *args)
