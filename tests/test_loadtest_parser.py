"""The load tester's HTTP/1.1 and SSE parsing, fed raw bytes through a fake transport."""
import asyncio
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tornado_grok.loadtest.client import Conn, Result, Target  # noqa: E402
from tornado_grok.loadtest.stats import Recorder, describe, percentile  # noqa: E402


class FakeTransport:
    def __init__(self):
        self.written = []
        self.aborted = False

    def write(self, data):
        self.written.append(data)

    def abort(self):
        self.aborted = True

    def close(self):
        self.aborted = True


def chunked(*parts):
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def event(obj):
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def delta(**d):
    return event({"choices": [{"index": 0, "delta": d, "finish_reason": None}]})


SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
USAGE = event({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 7,
                                        "total_tokens": 8}})


def feed(raw, pieces=None, stream=True, reused=False, lose=False):
    """Run one request over a FakeTransport; returns (result, recorder, conn, retry)."""
    loop = asyncio.new_event_loop()
    try:
        rec = Recorder()
        conn = Conn(rec)
        conn.connection_made(FakeTransport())
        fut = loop.create_future()
        res = Result()
        conn.begin(Target("http://127.0.0.1:9/v1", stream=stream), res, fut, reused)
        if pieces is None:
            pieces = [raw]
        for p in pieces:
            if conn.res is None:
                break
            conn.data_received(p)
        if lose:
            conn.connection_lost(None)
        return res, rec, conn, (fut.result() if fut.done() else None)
    finally:
        loop.close()


def byte_by_byte(raw):
    return [raw[i:i + 1] for i in range(len(raw))]


STREAM = SSE_HEAD + chunked(
    b": comment, not a token\n\n",
    delta(role="assistant", content=""),          # role only: not a token
    delta(reasoning_content="thinking"),          # reasoning counts as content
    delta(content="Hel") + delta(content="lo"),   # two events in one HTTP chunk
    delta(content=""),                            # empty: not a token
    b'data: {"choices":[{"delta":{"content":"split"},',  # one event across two HTTP chunks
    b'"index":0}]}\r\n\r\n',                      # CRLF line endings
    event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    USAGE,
    b"data: [DONE]\n\n",
)


@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_stream_counts_content_events_only(split):
    res, rec, conn, retry = feed(STREAM, None if split == "whole" else byte_by_byte(STREAM))
    assert res.end == "done" and res.done and res.status == 200
    assert res.chunks == 4 and rec.chunks == 4
    assert res.tokens == 7
    assert len(rec.gap_ms) == 3
    assert conn.reusable and retry is False


def test_request_bytes_are_a_valid_post():
    t = Target("http://127.0.0.1:8000/api/v1", key="k1", model="m", prompt="chunks=3")
    head, body = t.request_bytes.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/v1/chat/completions HTTP/1.1"
    assert "Authorization: Bearer k1" in lines
    assert f"Content-Length: {len(body)}" in lines
    doc = json.loads(body)
    assert doc["stream"] is True and doc["stream_options"] == {"include_usage": True}
    assert doc["messages"][-1] == {"role": "user", "content": "chunks=3"}
    assert Target("http://127.0.0.1/v1/chat/completions").path == "/v1/chat/completions"


@pytest.mark.parametrize("eol", [b"\r", b"\r\n", b"\n"])
def test_any_sse_line_ending_byte_by_byte(eol):
    body = b"".join(e.replace(b"\n", eol) for e in (
        b": ping\n\n", b"id: 1\ndata: " + json.dumps({"choices": [{"delta": {"content": "a"}}]}).encode()
        + b"\n\n", delta(content="b"), b"data: [DONE]\n\n"))
    raw = SSE_HEAD + chunked(body)
    for pieces in (None, byte_by_byte(raw)):
        res, rec, _, _ = feed(raw, pieces)
        assert (res.end, res.chunks, len(rec.gap_ms)) == ("done", 2, 1)


def test_multiline_data_event():
    raw = SSE_HEAD + chunked(b'data: {"choices":[{"delta":\ndata: {"content":"x"}}]}\n\ndata: [DONE]\n\n')
    res, _, _, _ = feed(raw)
    assert res.end == "done" and res.chunks == 1


def test_in_band_error_event():
    raw = SSE_HEAD + chunked(delta(content="a"), b'data: {"error":"API error: boom"}\n\n')
    res, rec, _, _ = feed(raw)
    assert res.end == "error_event" and res.error == "API error: boom" and res.chunks == 1


def test_object_error_event():
    raw = SSE_HEAD + chunked(event({"error": {"message": "API error: x", "type": "t"}}))
    res, _, _, _ = feed(raw)
    assert res.end == "error_event" and "API error: x" in res.error


def test_stream_without_done():
    res, _, _, _ = feed(SSE_HEAD + chunked(delta(content="a")))
    assert res.end == "no_done"


def test_disconnect_mid_stream():
    raw = SSE_HEAD + b"%x\r\n%s\r\n" % (len(delta(content="a")), delta(content="a"))
    res, rec, conn, retry = feed(raw, lose=True)
    assert res.end == "disconnected" and res.chunks == 1 and not conn.reusable


def test_stale_keepalive_connection_asks_for_retry():
    res, _, _, retry = feed(b"", pieces=[], reused=True, lose=True)
    assert retry is True


def test_http_error_with_content_length():
    body = b'{"error":{"message":"API error: no","type":"auth","code":null}}'
    raw = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)
    res, _, conn, _ = feed(raw, byte_by_byte(raw))
    assert res.end == "http_error" and res.status == 401 and "API error: no" in res.detail
    assert conn.reusable


def test_connection_close_header_prevents_reuse():
    raw = b"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno"
    res, _, conn, _ = feed(raw)
    assert res.end == "http_error" and not conn.reusable


def test_non_streaming_json_answer():
    body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                       "usage": {"completion_tokens": 5}}).encode()
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)
    res, rec, _, _ = feed(raw, stream=False)
    assert res.end == "done" and res.chunks == 1 and res.tokens == 5 and len(rec.ttft_ms) == 0
    rec.finished_one(res)
    assert len(rec.ttft_ms) == 1 and len(rec.total_ms) == 1


def test_huge_non_streaming_answer_is_not_kept_whole():
    text = "y" * (6 << 20)
    body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 123}}).encode()
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    pieces = [raw] + [body[i:i + 65536] for i in range(0, len(body), 65536)]
    res, _, conn, _ = feed(b"", pieces, stream=False)
    assert res.end == "done" and res.chunks == 1 and res.tokens == 123 and conn.reusable


def test_json_when_a_stream_was_asked_is_a_protocol_error():
    body = b'{"choices":[]}'
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)
    res, _, _, _ = feed(raw)
    assert res.end == "protocol_error"


def test_body_delimited_by_close():
    raw = (b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + delta(content="a")
           + b"data: [DONE]\n\n")
    res, _, conn, _ = feed(raw, lose=True)
    assert res.end == "done" and res.chunks == 1 and not conn.reusable


def test_interim_100_continue_is_skipped():
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + SSE_HEAD + chunked(delta(content="a"), b"data: [DONE]\n\n")
    res, _, _, _ = feed(raw, byte_by_byte(raw))
    assert res.end == "done" and res.status == 200 and res.chunks == 1


def test_garbage_status_line():
    res, _, conn, _ = feed(b"SPDY/9 what\r\n\r\n")
    assert res.end == "protocol_error" and conn.transport.aborted


def test_percentiles_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 100) == 100 and percentile([], 50) is None
    d = describe([3.0, 1.0, 2.0])
    assert d == {"n": 3, "mean": 2.0, "min": 1.0, "p50": 2.0, "p90": 3.0, "p99": 3.0, "max": 3.0}
