"""Every streamed response is sent with TCP_NODELAY on, read from the gateway's own socket.

Tornado leaves Nagle's algorithm on while a response is open and turns TCP_NODELAY off again after
each response, so the relay turns it on when a stream's headers go out: an event must not wait for the
ACK of the one before it. Timing cannot show this reliably on a shared machine; the socket option
can. The test takes a copy of the gateway's end of the client's connection with pidfd_getfd(2)
(Linux 5.6+, same user) and reads TCP_NODELAY from it.
"""

import ctypes
import errno
import json
import os
import socket
import uuid

import pytest

from tests import hardening_helpers as hh
from tests.servers import wait_until
from tests.wire import chat_body

SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


def _borrowed_socket(pid: int, peer: tuple):
    """The process's TCP socket whose peer is `peer`, as a socket of this process (a duplicate)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                code = ctypes.get_errno()
                if code in (errno.EPERM, errno.ENOSYS, errno.EACCES):
                    pytest.skip("pidfd_getfd is not allowed here (%s): the gateway's socket "
                                "options cannot be read" % errno.errorcode[code])
                continue
            s = socket.socket(fileno=fd)
            try:
                if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM and s.getpeername() == peer:
                    return s
            except OSError:  # a listening socket has no peer
                pass
            s.close()
    finally:
        os.close(pidfd)
    raise AssertionError("no socket of process %d is connected to %r" % (pid, peer))


def _nodelay(gateway, client: socket.socket) -> int:
    s = _borrowed_socket(gateway.proc.pid, client.getsockname())
    try:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        s.close()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux, Python 3.9+)")
def test_each_stream_on_a_kept_alive_connection_is_sent_with_nodelay(gateway, key):
    body = json.dumps(chat_body()).encode()

    def request(scenario: str) -> bytes:
        headers = hh.auth(key, **{"X-Mock-Scenario": scenario, "X-Mock-Test-Id": uuid.uuid4().hex})
        return hh.raw_request("POST", "/api/v1/chat/completions", headers, body)

    with hh.connect(gateway) as client:
        # A whole first stream: after it tornado has turned TCP_NODELAY off on this connection.
        client.sendall(request("story"))
        first = hh.read_until(client, b"data: [DONE]\n\n\r\n0\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200 OK")
        # (Tornado does that once the response's last write has completed: wait for it.)
        wait_until(lambda: _nodelay(gateway, client) == 0)
        # The second stream on the same connection, open (the mock stalls after three events).
        client.sendall(request("stall"))
        second = hh.read_until(client, b'"content":" a time,"')
        assert second.startswith(b"HTTP/1.1 200 OK")
        assert _nodelay(gateway, client) == 1
