"""The load tester's `--api responses` against the Responses target of tests/sse_target.py: typed
events, TTFT from the first text (or reasoning) delta, the terminal event's usage, and every way a
Responses stream can end. Counts are exact; timings are lower bounds only."""

import json

import pytest

from tests.sse_target import SSETarget
from tornado_grok.loadtest import cli
from tornado_grok.loadtest.client import Target
from tornado_grok.loadtest.parse import ResponsesSSEParser
from tornado_grok.loadtest.stats import Recorder


@pytest.fixture(scope="module")
def target():
    t = SSETarget()
    yield t
    t.close()


def run(capsys, target, prompt, *extra):
    argv = ["--url", target.url, "--api", "responses", "--prompt", prompt, "--json", "--no-progress", *extra]
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_streams_count_deltas_and_take_tokens_from_the_terminal_event(target, capsys):
    doc = run(capsys, target, "chunks=10 delay=20 size=8", "-c", "2", "-n", "4")
    assert doc["config"]["api"] == "responses"
    assert doc["runs"][0]["endpoint"].endswith("/v1/responses")
    s = doc["runs"][0]["summary"]
    assert s["ends"] == {"done": 4} and s["errors"] == 0
    # Only the 10 output_text deltas are chunks: created, in_progress and output_item.added are not.
    assert s["chunks"] == 40 and s["tokens"] == 40
    assert s["ttft_ms"]["n"] == 4 and s["gap_ms"]["n"] == 36
    assert s["gap_ms"]["p50"] >= 20.0


def test_the_request_is_a_responses_body(target):
    t = Target(target.url, "k", "grok-4.3", "hello", True, api="responses")
    head, body = t.request_bytes.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v1/responses HTTP/1.1\r\n")
    assert json.loads(body) == {"model": "grok-4.3", "input": [{"role": "user", "content": "hello"}],
                                "stream": True}
    with pytest.raises(ValueError):
        Target(target.url, api="completions")


def test_reasoning_deltas_count_for_ttft(target, capsys):
    s = run(capsys, target, "chunks=6 reasoning=4", "-c", "1", "-n", "2")["runs"][0]["summary"]
    assert s["chunks"] == 12 and s["ttft_ms"]["n"] == 2 and s["ends"] == {"done": 2}


@pytest.mark.parametrize("prompt,ends,chunks", [
    ("chunks=5 incomplete=1", {"done": 2}, 10),        # max_output_tokens reached: an answer
    ("chunks=5 error_at=3", {"error_event": 2}, 6),    # response.failed
    ("chunks=5 no_done=1", {"no_done": 2}, 10),        # no terminal event: not a whole answer
    ("chunks=5 drop_at=2", {"disconnected": 2}, 4),
    ("status=429", {"http_error": 2}, 0),
])
def test_every_ending(target, capsys, prompt, ends, chunks):
    # --max-error-rate 1: the endings are the point here, not the exit status
    s = run(capsys, target, prompt, "-c", "1", "-n", "2", "--max-error-rate", "1")["runs"][0]["summary"]
    assert s["ends"] == ends and s["chunks"] == chunks
    if "error_event" in ends:
        assert "failed as asked" in json.dumps(s["error_examples"])


def test_whole_answers(target, capsys):
    s = run(capsys, target, "chunks=7", "--no-stream", "-c", "1", "-n", "3")["runs"][0]["summary"]
    assert s["ends"] == {"done": 3} and s["tokens"] == 21 and s["chunks"] == 3


def feed(raw: bytes):
    class Res:
        done = False
        error = None
        tokens = None
        chunks = 0
        t_prev = t_first = 0.0
    res, rec = Res(), Recorder()
    parser = ResponsesSSEParser(res, rec)
    for i in range(0, len(raw), 7):  # cut anywhere
        parser.feed(raw[i:i + 7], 1.0)
    parser.close(1.0)
    return res


def test_parser_details():
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"%s"}\n\n'
    done = (b'event: response.completed\ndata: {"type":"response.completed","response":'
            b'{"status":"completed","usage":{"output_tokens":9}}}\n\n')
    res = feed(delta % b"a" + delta % b"" + b": keep-alive\n\n" + delta % b"b" + done)
    assert (res.chunks, res.done, res.tokens, res.error) == (2, True, 9, None)
    # data-only events (no event: line) are typed by their JSON; an `error` event is an error.
    res = feed(b'data: {"type":"response.output_text.delta","delta":"x"}\n\n'
               b'data: {"type":"error","code":"server_error","message":"boom"}\n\n')
    assert (res.chunks, res.done, res.error) == (1, False, "boom")
    # CRLF line ends, as some servers send them.
    res = feed((delta % b"c" + done).replace(b"\n", b"\r\n"))
    assert (res.chunks, res.done, res.tokens) == (1, True, 9)
