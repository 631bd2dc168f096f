"""What the gateway decides from a request's head alone, on raw sockets: a bad key is a 401 before any
body byte is read (and never `100 Continue`), an oversized head is a 431 or 414, too many header lines
a 431; a good key still gets `100 Continue` and its answer."""

import json
import socket

import requests

from tests import hardening_helpers as hh, servers
from tests.wire import chat_body

BIG = 19 * 1024 * 1024


def head(path: str = "/api/v1/chat/completions", **headers) -> bytes:
    lines = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1"] + ["%s: %s" % kv for kv in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> bytes:
    """Everything until the server closes (the answers here end with a close)."""
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not piece:
            return data
        data += piece


def rss_peak_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_bad_key_with_expect_gets_401_at_once_and_no_100_continue(gateway):
    sock = hh.connect(gateway)
    sock.sendall(head(**{"Authorization": "Bearer tg-wrong", "Content-Type": "application/json",
                         "Content-Length": str(BIG), "Expect": "100-continue"}))
    answer = read_response(sock)  # the gateway answers and closes without waiting for the body
    sock.close()
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer[:200]
    assert b"100 (Continue)" not in answer and b" 100 " not in answer.split(b"\r\n")[0]
    assert b"\r\nwww-authenticate: bearer" in answer.lower()
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["message"] == "API error: Invalid authentication token"


def test_bad_key_bodies_are_not_read_into_memory(gateway):
    """Five clients each declare 19 MiB and send it anyway: the gateway's peak RSS does not follow."""
    before = rss_peak_kib(gateway.proc.pid)
    answers = []
    for _ in range(5):
        sock = hh.connect(gateway)
        sock.sendall(head(**{"Authorization": "Bearer tg-wrong", "Content-Length": str(BIG)}))
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(19):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us after the 401: what we want
        answers.append(read_response(sock))
        sock.close()
    grew_mib = (rss_peak_kib(gateway.proc.pid) - before) / 1024
    assert grew_mib < 16, "peak RSS grew by %.1f MiB" % grew_mib
    assert any(a.startswith(b"HTTP/1.1 401 ") for a in answers), [a[:40] for a in answers]


def test_good_key_with_expect_gets_100_continue_and_its_answer(gateway, key):
    # A key made while the gateway runs is picked up within a second (auth.KeyStore): wait for it.
    servers.wait_until(lambda: requests.get(gateway.base + "/models", headers=hh.auth(key), timeout=5)
                       .status_code == 200)
    body = json.dumps(chat_body(content="x" * (1024 * 1024), stream=False)).encode()
    sock = hh.connect(gateway)
    sock.sendall(head(**{"Authorization": "Bearer " + key, "Content-Type": "application/json",
                         "Content-Length": str(len(body)), "Expect": "100-continue", "Connection": "close"}))
    got = hh.read_until(sock, b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 100 "), got[:100]
    sock.sendall(body)
    answer = hh.read_all(sock)
    sock.close()
    final = (got + answer).split(b"\r\n\r\n", 1)[1]
    assert final.startswith(b"HTTP/1.1 200 OK\r\n"), final[:300]
    assert json.loads(final.partition(b"\r\n\r\n")[2])["object"] == "chat.completion"


def test_a_small_stream_request_with_a_bad_key_keeps_the_seed_form(gateway):
    body = json.dumps(chat_body()).encode()
    sock = hh.connect(gateway)
    sock.sendall(head(**{"Authorization": "Bearer tg-wrong", "Content-Length": str(len(body)),
                         "Connection": "close"}) + body)
    answer = hh.read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert answer.endswith(b'\r\n\r\ndata: {"error":"API error: Invalid authentication token"}\n\n')


def send(gateway, raw: bytes) -> bytes:
    sock = hh.connect(gateway)
    try:
        sock.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the answer came before all of it was taken: read it
    answer = read_response(sock)
    sock.close()
    return answer


def test_a_one_megabyte_header_is_431(gateway):
    answer = send(gateway, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "headers_too_large"


def test_a_100_kb_url_is_414(gateway):
    answer = send(gateway, b"GET /api/v1/models/" + b"m" * (100 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), answer[:200]


def test_twelve_thousand_short_headers_are_431(gateway):
    answer = send(gateway, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"a:b\r\n" * 12000 + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "too_many_headers"


def test_a_hundred_headers_are_fine(gateway):
    answer = send(gateway, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  + b"a: b\r\n" * 98 + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]


def test_endpoints_without_a_key_do_not_read_big_bodies(gateway):
    for path in ("/healthz", "/metrics", "/no/such/path"):
        sock = hh.connect(gateway)
        sock.sendall(head(path, **{"Content-Length": str(BIG), "Expect": "100-continue"}))
        answer = read_response(sock)
        sock.close()
        assert b" 100 " not in answer.split(b"\r\n")[0], path
        assert answer.startswith((b"HTTP/1.1 413 ", b"HTTP/1.1 404 ")), (path, answer[:100])
