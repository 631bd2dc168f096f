"""Keep-alives while the upstream is silent, and the connect, first-event, idle and total timeouts.

Each test runs its own gateway with short timeouts, and asks the mock to replay at real speed for
that one request (X-Mock-Speed); what is asserted is the order and content of bytes, never a time
(the one count bound, keep-alives per second of silence, is measured against the request's own
duration: a busy machine makes fewer, never more).
"""

import time
import uuid

import pytest

from tests.wire import chat_body, data_events, direct, events, post

UPSTREAM_MODEL = b'"model":"grok-4.20-non-reasoning"'
CLIENT_MODEL = b'"model":"grok-4-1-fast-non-reasoning"'


def stream(gateway, key, scenario, speed="1", stream=True, test_id=None):
    headers = {"Authorization": "Bearer " + key, "X-Mock-Scenario": scenario, "X-Mock-Speed": speed}
    if test_id is not None:
        headers["X-Mock-Test-Id"] = test_id
    return post(gateway.base + "/chat/completions", chat_body(stream=stream), headers)


def test_keepalive_comments_while_the_first_token_is_slow(make_gateway, mock):
    gateway, key = make_gateway({"keepalive_interval": 0.1})
    began = time.monotonic()
    r = stream(gateway, key, "slow_first", speed="0.2")  # first event after 1 s
    took = time.monotonic() - began
    blocks = events(r.content)
    assert blocks[0] == b": keep-alive"
    first_data = next(i for i, b in enumerate(blocks) if b.startswith(b"data:"))
    assert set(blocks[:first_data]) == {b": keep-alive"}
    # one per keepalive_interval of silence, not one per sweep (four per interval)
    assert blocks.count(b": keep-alive") <= took / 0.1 + 1, (blocks.count(b": keep-alive"), took)
    upstream = direct(mock, chat_body(model="grok-4.20-non-reasoning"), {"X-Mock-Scenario": "slow_first"})
    expected = [b.replace(UPSTREAM_MODEL, CLIENT_MODEL) for b in data_events(upstream.content)]
    assert data_events(r.content) == expected
    assert r.content.endswith(b"data: [DONE]\n\n")


def test_no_keepalive_while_events_flow(make_gateway):
    """Each event resets the keep-alive clock: a story streamed 40 ms a chunk for 0.8 s gets no
    keep-alive with keepalive_interval = 0.5 s (one would take a 0.5 s gap between two events)."""
    gateway, key = make_gateway({"keepalive_interval": 0.5})
    r = stream(gateway, key, "story")
    assert len(data_events(r.content)) == 22 and r.content.endswith(b"data: [DONE]\n\n")  # 20 chunks, finish, [DONE]
    assert b": keep-alive" not in r.content


def test_first_event_timeout_before_anything_was_sent_is_504(make_gateway):
    gateway, key = make_gateway({"first_event_timeout": 0.3, "keepalive_interval": 60})
    r = stream(gateway, key, "slow_first")
    assert r.status_code == 504
    assert r.content == b'data: {"error":"API error: upstream first event timeout"}\n\n'


def test_first_event_timeout_without_streaming_is_504(make_gateway):
    gateway, key = make_gateway({"first_event_timeout": 0.3})
    r = stream(gateway, key, "slow_first", stream=False)
    assert r.status_code == 504
    assert r.json()["error"]["message"] == "API error: upstream timed out"


def test_idle_timeout_mid_stream_is_an_in_band_error(make_gateway, mock):
    gateway, key = make_gateway({"idle_timeout": 0.3, "keepalive_interval": 60})
    test_id = uuid.uuid4().hex
    r = stream(gateway, key, "stall", test_id=test_id)
    assert r.status_code == 200
    blocks = data_events(r.content)
    assert len(blocks) == 4
    assert blocks[-1] == b'data: {"error":"API error: upstream idle timeout"}'
    # and the gateway hung up on the stalled upstream (the mock's stall lasts ten minutes)
    assert mock.wait_ended(timeout=5, test_id=test_id)["ended"] == "client_closed"


def test_total_timeout(make_gateway):
    gateway, key = make_gateway({"total_timeout": 0.3, "keepalive_interval": 60})
    r = stream(gateway, key, "story")  # 20 chunks 40 ms apart: longer than 0.3 s
    assert r.status_code == 200
    assert data_events(r.content)[-1] == b'data: {"error":"API error: upstream total timeout"}'
    assert b"[DONE]" not in r.content


@pytest.mark.parametrize("stream_flag", [True, False])
def test_upstream_refusing_connections_is_502(make_gateway, stream_flag):
    import socket
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway, key = make_gateway(upstream_url="http://127.0.0.1:%d/v1" % port)
    r = post(gateway.base + "/chat/completions", chat_body(stream=stream_flag),
             {"Authorization": "Bearer " + key})
    assert r.status_code == 502
    if stream_flag:
        assert r.content == b'data: {"error":"API error: upstream unreachable"}\n\n'
    else:
        assert r.json()["error"]["message"] == "API error: upstream unreachable"


def test_connect_timeout_is_504(make_gateway):
    import socket
    # A listener that never accepts, its backlog filled: the kernel drops further SYNs, so a
    # connect neither succeeds nor fails until the gateway's connect_timeout ends it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        gateway, key = make_gateway({"connect_timeout": 0.3},
                                    upstream_url="http://127.0.0.1:%d/v1" % port)
        r = post(gateway.base + "/chat/completions", chat_body(), {"Authorization": "Bearer " + key})
        assert r.status_code == 504
        assert r.content == b'data: {"error":"API error: upstream timed out"}\n\n'
    finally:
        for s in fillers:
            s.close()
        listener.close()
