"""At the open-file limit the gateway stops accepting for a while instead of spinning: one log line,
connections already open are still served, and it accepts again by itself once fds are free."""

import os
import resource
import socket

from tests import hardening_helpers as hh, servers


def get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return hh.read_until(sock, b'}')


def test_at_the_fd_limit_accepting_backs_off_and_recovers(mock, tmp_path):
    gateway, _ = hh.start(str(tmp_path), mock.base)
    try:
        before = hh.connect(gateway)
        assert get(before, "/healthz").startswith(b"HTTP/1.1 200 OK\r\n")  # accepted, kept alive
        pid = gateway.proc.pid
        in_use = len(os.listdir("/proc/%d/fd" % pid))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 20, in_use + 20))
        extra = []
        # Connections past the limit wait in the listen backlog; the gateway's accept() fails on them.
        while "accept failed" not in gateway.stderr and len(extra) < 100:
            extra.append(hh.connect(gateway))
        servers.wait_until(lambda: "accept failed" in gateway.stderr)
        assert "Too many open files" in gateway.stderr
        assert get(before, "/healthz").startswith(b"HTTP/1.1 200 OK\r\n")  # still served
        for sock in extra:
            sock.close()
        fresh = servers.wait_until(lambda: _healthz_on_new_connection(gateway), timeout=10)
        assert fresh.startswith(b"HTTP/1.1 200 OK\r\n")
        assert get(before, "/healthz").startswith(b"HTTP/1.1 200 OK\r\n")
        before.close()
        log = gateway.stderr
        assert log.count("accept failed") == 1, log[-2000:]
        assert "Traceback" not in log
    finally:
        gateway.stop()


def _healthz_on_new_connection(gateway):
    try:
        sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=2)
        try:
            return get(sock, "/healthz")
        finally:
            sock.close()
    except OSError:
        return None
