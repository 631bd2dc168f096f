"""The incremental SSE parser: every way an upstream can cut, merge and end its events."""

import pytest

from tornado_grok.sse import SSEError, SSEParser

STREAM = (b'data: {"a":1}\n\n'
          b': ping\n\n'
          b'data: {"b":"h\xc3\xa9llo \xf0\x9f\x9a\x80"}\n\n'
          b'data: [DONE]\n\n')
EXPECTED = [b'{"a":1}', '{"b":"héllo 🚀"}'.encode(), b"[DONE]"]


def feed_all(parser, pieces):
    out = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    return out


def test_one_read_with_several_events_and_a_comment():
    p = SSEParser()
    assert p.feed(STREAM) == EXPECTED
    assert p.comments == 1
    assert not p.pending()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16])
def test_every_split_point_gives_the_same_events(size):
    # Splitting into pieces of `size` bytes cuts events, line ends and the multi-byte characters.
    pieces = [STREAM[i:i + size] for i in range(0, len(STREAM), size)]
    assert feed_all(SSEParser(), pieces) == EXPECTED


def test_utf8_character_split_across_two_reads():
    raw = 'data: {"c":"🚀"}\n\n'.encode()
    cut = raw.index(b"\xf0") + 2  # inside the 4-byte rocket
    p = SSEParser()
    assert p.feed(raw[:cut]) == []
    assert p.feed(raw[cut:]) == ['{"c":"🚀"}'.encode()]


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_line_ends(eol):
    raw = b"data: x" + eol + eol + b"data: y" + eol + eol
    assert SSEParser().feed(raw) == [b"x", b"y"]


def test_crlf_split_between_cr_and_lf():
    p = SSEParser()
    assert p.feed(b"data: x\r") == []
    assert p.feed(b"\n\r") == [b"x"]  # CRLF then a CR: the blank line ends the event at once
    assert p.feed(b"\ndata: y\r\n\r\n") == [b"y"]  # the LF completing that CRLF adds no blank line


def test_multiline_data_and_other_fields():
    raw = b"event: message\nid: 7\nretry: 10\ndata: one\ndata:two\n\n"
    assert SSEParser().feed(raw) == [b"one\ntwo"]


def test_blank_keepalives_and_empty_comment_yield_nothing():
    p = SSEParser()
    assert p.feed(b"\n\n:\n\n: keep-alive\n\n") == []
    assert p.comments == 2


def test_unfinished_event_is_pending():
    p = SSEParser()
    assert p.feed(b'data: {"partial"') == []
    assert p.pending()


def test_oversized_event_is_refused():
    p = SSEParser()
    with pytest.raises(SSEError):
        for _ in range(10):
            p.feed(b"data: " + b"x" * (1024 * 1024))


def test_plain_fast_path_takes_ordinary_reads_whole():
    from tornado_grok.sse import plain_events
    read = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: {"c"'
    assert plain_events(read) == (b'data: {"a":1}\n\ndata: {"b":2}\n\n', 2, False, b'data: {"c"')
    assert plain_events(b'data: {"a":1}\n\ndata: [DONE]\n\n') == (b'data: {"a":1}\n\n', 1, True, b"")
    assert plain_events(b"data: [DONE]\n\n") == (b"", 0, True, b"")


@pytest.mark.parametrize("read", [
    b'data: {"a":1}\r\n\r\n',            # CRLF
    b': ping\n\ndata: {"a":1}\n\n',       # a comment
    b'data: {"a":1}\n\n: ping\n\n',
    b'event: x\ndata: {"a":1}\n\n',       # another field
    b'data: {"a":\ndata: 1}\n\n',         # multi-line data
    b'data: [1]\n\n',                     # not an object
    b'data: {"a":1}\n\ndata: {"b" trunc\n\n',  # a truncated object
    b'data: {"a":1}\n\n\n',
    b'data: {"a":1}',                     # nothing complete yet
])
def test_plain_fast_path_declines_anything_unusual(read):
    from tornado_grok.sse import plain_events
    assert plain_events(read) is None



LIMIT = 100


@pytest.mark.parametrize("last_line", [LIMIT - 2, LIMIT - 3])
def test_a_multi_line_event_of_at_most_max_event_bytes_passes_with_its_last_line_cut(last_line):
    # Joined data: "A" + "\n" + the last line's value = 2 + last_line bytes (the limit, or one less).
    # The last line arrives unfinished first: its "data: " prefix is not yet known to be one.
    p = SSEParser(max_event=LIMIT)
    value = b"x" * last_line
    assert p.feed(b"data: A\n" + b"data: " + value) == []
    assert p.feed(b"\n\n") == [b"A\n" + value]


def test_a_multi_line_event_one_byte_over_max_event_is_refused_when_its_line_ends():
    p = SSEParser(max_event=LIMIT)
    assert p.feed(b"data: A\ndata: " + b"x" * (LIMIT - 1)) == []
    with pytest.raises(SSEError):
        p.feed(b"\n")


@pytest.mark.parametrize("reads", [1, 7])
def test_an_endless_second_data_line_is_refused_before_it_ends(reads):
    """The bound holds for the data so far plus the line not ended yet, whatever the reads."""
    p = SSEParser(max_event=LIMIT)
    p.feed(b"data: A\n")
    line = b"data: " + b"x" * (LIMIT + 6)
    size = -(-len(line) // reads)
    with pytest.raises(SSEError):
        for k in range(0, len(line), size):
            p.feed(line[k:k + size])
