"""Backpressure: a client that reads nothing makes the gateway pause its upstream read (the mock's
writes stop well before the end of a long stream) instead of buffering the whole answer; when the
client reads again everything arrives, byte for byte as the upstream sent it, in order."""

import re
import socket
import time

import pytest

from tests import hardening_helpers as hh
from tests.servers import wait_until
from tests.wire import chat_body, data_events, direct, post

CHUNKS = 100_000  # ~30 MB of SSE: far more than the socket buffers and the high-water mark together
BODY = chat_body(content="chunks=%d size=200" % CHUNKS, model="bench-model")
CREATED = re.compile(rb'"created":\d+')


@pytest.fixture(scope="module")
def bp_gateway(mock, tmp_path_factory):
    g, key = hh.start(str(tmp_path_factory.mktemp("bp")), mock.base,
                      {"idle_timeout": 1.0, "high_water_mark": 64 * 1024})
    yield g, key
    g.stop()


def slow_socket(gateway) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    s.settimeout(30)
    s.connect(("127.0.0.1", gateway.port))
    return s


def settled(count, quiet: float = 0.3, timeout: float = 10.0) -> int:
    """count() once it has not changed for `quiet` seconds (within `timeout`)."""
    last, since = count(), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        now_count = count()
        if now_count != last:
            last, since = now_count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
        time.sleep(0.02)  # polling a count the test waits on, bounded by timeout
    raise AssertionError("the upstream never stopped writing (last count %d)" % last)


def test_a_client_that_reads_nothing_pauses_the_upstream(bp_gateway, mock):
    gateway, key = bp_gateway
    test_id = "bp-" + str(time.monotonic_ns())
    s = slow_socket(gateway)
    payload = hh.json.dumps(BODY).encode()
    s.sendall(hh.raw_request("POST", "/api/v1/chat/completions",
                             hh.auth(key, **{"X-Mock-Test-Id": test_id, "Connection": "close"}), payload))
    wait_until(lambda: hh.state(gateway)["paused_streams"] == 1, timeout=10)
    mock.wait_entry(test_id=test_id)
    # The pause stops the gateway's reads; the mock's writes stop once the kernel buffers between
    # the two are full, a little later: count from then.
    written = settled(lambda: mock.journal(test_id=test_id)[-1]["events"])
    # Read nothing for longer than idle_timeout: a paused stream is slow, not idle, and is kept.
    time.sleep(1.5)
    entry = mock.journal(test_id=test_id)[-1]
    assert entry["ended"] is None
    # The mock writes (and journals) batches of 256 chunks; most of them could not be written, and
    # nothing moved while the client read nothing (what did fit is in kernel socket buffers).
    assert entry["events"] * 256 < CHUNKS / 2, entry["events"]
    assert entry["events"] == written
    assert hh.state(gateway)["paused_streams"] == 1

    raw = hh.read_all(s)
    s.close()
    head, body, complete = hh.dechunk(raw)
    assert head.startswith(b"HTTP/1.1 200") and complete
    # Byte for byte what the upstream sends a client that did not ask for usage (the gateway asked
    # upstream for it, and kept the usage chunk from this client, as README.md says).
    expected = direct(mock, BODY).content
    assert body.count(b"\n\n") == CHUNKS + 2  # the content chunks, the finish chunk, [DONE]
    assert b'"usage"' not in body
    assert CREATED.sub(b"", body) == CREATED.sub(b"", expected)
    assert mock.wait_ended(test_id=test_id)["ended"] == "complete"
    hh.wait_idle(gateway)


@pytest.mark.parametrize("usage", [False, True], ids=["usage-not-asked", "usage-asked"])
def test_fast_readers_are_not_paused_for_long(bp_gateway, mock, usage):
    gateway, key = bp_gateway
    body = chat_body(content="chunks=20000 size=200", model="bench-model")
    if usage:
        body["stream_options"] = {"include_usage": True}
    r = post(gateway.base + "/chat/completions", body, hh.auth(key), timeout=60)
    assert r.status_code == 200
    # The usage chunk (its own event, `choices: []`, as xAI sends it) only for the client that asked.
    assert r.content.count(b"\n\n") == 20000 + 2 + usage and r.content.endswith(b"data: [DONE]\n\n")
    assert CREATED.sub(b"", r.content) == CREATED.sub(b"", direct(mock, body).content)
    last = data_events(r.content)[-2]
    if usage:
        assert last.startswith(b'data: {"id":"chatcmpl-bench"') and b'"choices":[],"usage":{' in last
    else:
        assert b'"usage"' not in r.content
    hh.wait_idle(gateway)
