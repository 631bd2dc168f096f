"""A throwaway redis-server for the tests: a free loopback port, no persistence, ready when PING answers.

    server = RedisServer.start()      # or skip_unless_available() first, in a pytest module
    server.url                        # redis://127.0.0.1:PORT/0
    server.stop(); server.restart()   # an outage and the recovery, on the same port
"""

import shutil
import socket
import subprocess
import time

INSTALL_HINT = "redis-server is not on PATH; install it with `apt-get install redis-server` to run these tests"


def available() -> bool:
    return shutil.which("redis-server") is not None


def skip_unless_available():
    """A pytest mark that skips a module or test when redis-server is missing, saying how to get it."""
    import pytest

    return pytest.mark.skipif(not available(), reason=INSTALL_HINT)


async def wait_up(health, timeout: float = 10.0) -> None:
    """Waits (with a deadline) until a RedisHealth's background probe saw the server answer again."""
    import asyncio

    deadline = time.monotonic() + timeout
    while health.down:
        if time.monotonic() > deadline:
            raise AssertionError("Redis still marked down after %ss" % timeout)
        await asyncio.sleep(0.01)  # polling the probe's flag, not a fixed delay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port: int, timeout: float = 0.5) -> bool:
    """One inline PING over a raw socket; True when the server answers +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server child process; stop() and restart() keep the port, so clients reconnect."""

    def __init__(self, port: int):
        self.port = port
        self.proc = None

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port

    @classmethod
    def start(cls, port: int | None = None, timeout: float = 10.0) -> "RedisServer":
        server = cls(port or free_port())
        server.restart(timeout)
        return server

    def restart(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: %s" % self.proc.stdout.read().decode(errors="replace"))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer PING on port %d" % self.port)
            time.sleep(0.01)  # polling for readiness, not a fixed delay

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(64)
