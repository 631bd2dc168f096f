"""TCP_NODELAY is on for a client connection's whole life, read from the gateway's own socket.

Tornado leaves Nagle's algorithm on while a response is open and turns TCP_NODELAY off again after
each response; the gateway keeps it on from accept to close (connections._Stream), as nginx's
tcp_nodelay does: a stream's event must not wait for the ACK of the one before it. Timing cannot
show this reliably on a shared machine; the socket option can. The test takes a copy of the
gateway's end of the client's connection with pidfd_getfd(2) (Linux 5.6+, same user) and reads
TCP_NODELAY from it.
"""

import ctypes
import errno
import json
import os
import socket
import uuid

import pytest

from tests import hardening_helpers as hh
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
def test_nodelay_stays_on_after_whole_answers_and_streams_on_a_kept_alive_connection(gateway, mock, key):
    def request(body: dict, test_id: str) -> bytes:
        headers = hh.auth(key, **{"X-Mock-Scenario": "story", "X-Mock-Test-Id": test_id})
        return hh.raw_request("POST", "/api/v1/chat/completions", headers, json.dumps(body).encode())

    with hh.connect(gateway) as client:
        # A whole answer, then a whole stream: after each, tornado would turn TCP_NODELAY off.
        client.sendall(request(chat_body(stream=False), uuid.uuid4().hex))
        assert hh.read_until(client, b'"finish_reason":"stop"').startswith(b"HTTP/1.1 200 OK")
        client.sendall(request(chat_body(), uuid.uuid4().hex))
        assert b"HTTP/1.1 200 OK" in hh.read_until(client, b"data: [DONE]\n\n\r\n0\r\n\r\n")
        # A third request, read by the gateway only after the second had ended (and tornado's turn
        # off had run): its upstream stays silent, so nothing of its own answer has been written.
        test_id = uuid.uuid4().hex
        mock.set_fault(test_id, {"stall_after": 0})
        try:
            client.sendall(request(chat_body(), test_id))
            mock.wait_entry(test_id=test_id, timeout=10)
            assert _nodelay(gateway, client) == 1
        finally:
            mock.clear_faults(test_id)
