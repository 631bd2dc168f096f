"""The byte-scan fast path and the parser for Responses events (sse.plain_deltas, SSEParser(typed))."""

import pytest

from tornado_grok.sse import SSEParser, plain_deltas

DELTA = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"m",'
         b'"output_index":0,"content_index":0,"delta":"Hi","sequence_number":4}\n\n')
ARGS = b'event: response.function_call_arguments.delta\ndata: {"delta":"{\\"a\\"","sequence_number":5}\n\n'
REASONING = b'event: response.reasoning_summary_text.delta\ndata: {"delta":"hm","sequence_number":6}\n\n'


def test_ordinary_deltas_take_the_fast_path():
    read = DELTA + ARGS + REASONING + b"event: response.output_text.delta\ndata: {\"delta\""
    assert plain_deltas(read) == (DELTA + ARGS + REASONING, 3, False, b"event: response.output_text.delta\ndata: {\"delta\"")
    assert plain_deltas(DELTA) == (DELTA, 1, False, b"")


@pytest.mark.parametrize("read", [
    b'event: response.completed\ndata: {"type":"response.completed","response":{}}\n\n',  # terminal: usage
    b'event: error\ndata: {"type":"error","message":"x"}\n\n',
    b'event: response.created\ndata: {"response":{"error":null}}\n\n',
    DELTA + b'event: response.incomplete\ndata: {"response":{}}\n\n',  # a terminal after a delta
    DELTA.replace(b"\n", b"\r\n"),  # CR line ends: the parser's job
    b": keep-alive\n\n" + DELTA,
    b'data: {"delta":"no event line"}\n\n',
    b'event: response.output_text.delta\ndata: {"a":1}\ndata: {"b":2}\n\n',  # two data lines
    b'event: response.output_text.delta\n\nevent: response.output_text.delta\ndata: {"a":1}\n\n',
    b'event: response.output_text.delta\ndata: {"a":1\n\n',  # not closed
    b'event: response.output_text.delta\ndata: {"error":{"message":"x"}}\n\n',
    b"event: response.output_text.delta\ndata: {",  # no complete event yet
    # A lone CR ends a line: these are two data lines, which the byte scan would take for one.
    b'event: response.output_text.delta\ndata: {"a":1}\rdata: {"b":2}\n\n',
    DELTA + b'event: response.output_text.delta\ndata: {"a":"\r"}\n\n',
    # Not JSON, though framed by braces: what bytes can tell without parsing goes to the parser.
    DELTA + b'event: response.output_text.delta\ndata: {oops}\n\n',
    b'event: response.output_text.delta\ndata: {"delta":"x",}\n\n',
    b'event: response.output_text.delta\ndata: {"delta":}\n\n',
    b'event: response.output_text.delta\ndata: {"delta":"cut}\n\n',
])
def test_everything_else_goes_through_the_parser(read):
    assert plain_deltas(read) is None


def test_typed_parser_yields_event_names_across_reads():
    p = SSEParser(typed=True)
    assert p.feed(b"event: response.created\r\ndata: {\"a\"") == []
    assert p.pending()
    assert p.feed(b":1}\r\n\r\n: ping\n\ndata: {\"b\":2}\n\nevent:x\n") == [
        (b"response.created", b'{"a":1}'), (None, b'{"b":2}')]
    assert p.pending()  # an event line seen, its data not yet
    assert p.feed(b"data: {}\n\n") == [(b"x", b"{}")]
    assert SSEParser().feed(b"event: e\ndata: {}\n\n") == [b"{}"]  # untyped: chat's parser, as before


@pytest.mark.parametrize("read", [b'data: {"error":"x"}\n\n', b'data: {"choices":[],"usage":{"total_tokens":3}}\n\n'])
def test_chat_fast_path_leaves_errors_and_usage_to_the_parser(read):
    from tornado_grok.sse import plain_events
    assert plain_events(read) is None
    assert plain_events(b'data: {"a":1}\n\n') is not None
