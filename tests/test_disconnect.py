"""A client that goes away mid-stream: the upstream transfer stops and nothing is left behind."""

import json
import socket
import uuid

import requests

from tests import hardening_helpers as hh
from tests.servers import wait_until
from tests.wire import chat_body


def open_stream(gateway, key, test_id, scenario="stall", stream=True, speed=None):
    host, port = gateway.url.split("//")[1].split(":")
    body = json.dumps(chat_body(stream=stream)).encode()
    extra = b"X-Mock-Speed: %s\r\n" % str(speed).encode() if speed is not None else b""
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer %s\r\nX-Mock-Scenario: %s\r\nX-Mock-Test-Id: %s\r\n%s"
              b"Content-Length: %d\r\n\r\n" % (host.encode(), key.encode(), scenario.encode(),
                                                  test_id.encode(), extra, len(body)) + body)
    return s


def read_until(s, marker: bytes) -> bytes:
    return hh.read_until(s, marker)


def open_streams(gateway, key) -> int:
    return requests.get(gateway.url + "/readyz", timeout=5).json()["open_streams"]


def test_disconnect_mid_stream_stops_the_upstream(gateway, mock, key):
    test_id = uuid.uuid4().hex
    s = open_stream(gateway, key, test_id)
    got = read_until(s, b'"content":" a time,"')  # the third event, after which the mock stalls
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert open_streams(gateway, key) >= 1
    s.close()
    entry = mock.wait_ended(timeout=3, test_id=test_id)
    assert entry["ended"] == "client_closed"
    wait_until(lambda: open_streams(gateway, key) == 0, timeout=3)


def test_disconnect_while_waiting_for_a_whole_answer(gateway, mock, key):
    test_id = uuid.uuid4().hex
    s = open_stream(gateway, key, test_id, scenario="slow_first", stream=False, speed=1)
    mock.wait_entry(timeout=5, test_id=test_id)  # the request reached the upstream
    s.close()
    entry = mock.wait_ended(timeout=3, test_id=test_id)
    assert entry["ended"] == "client_closed"


def test_usage_of_an_abandoned_stream_is_still_recorded(gateway, key):
    # The access log line of the abandoned stream says how it ended.
    test_id = uuid.uuid4().hex
    s = open_stream(gateway, key, test_id)
    head = read_until(s, b'"content":" a time,"').split(b"\r\n\r\n")[0].decode()
    s.close()
    request_id = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
                      if line.lower().startswith("x-request-id:"))
    # This stream's own line: another test's abandoned request may have logged client_gone too.
    line = hh.access_line(gateway, request_id)
    assert line["ended"] == "client_gone" and line["events"] >= 3
