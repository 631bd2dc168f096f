"""The SSE parser's bound on one event (max_event_size), the same however the upstream cuts its
reads, and the events around it intact (the hostile upstream itself is in
test_loop_hostile_upstream.py)."""

import pytest

from tornado_grok.sse import SSEError, SSEParser

LIMIT = 65536


def feed_in(parser, data: bytes, size: int) -> list:
    out = []
    for i in range(0, len(data), size):
        out.extend(parser.feed(data[i:i + size]))
    return out


@pytest.mark.parametrize("size", [1, 7, 4096, 16384, 1 << 20])
def test_an_event_of_exactly_the_bound_passes_and_one_byte_more_does_not(size):
    line = b"data: " + b"a" * LIMIT + b"\n\n"
    assert feed_in(SSEParser(LIMIT), line + b'data: {"b":1}\n\n', size) == [b"a" * LIMIT, b'{"b":1}']
    with pytest.raises(SSEError, match=r"larger than max_event_size \(65536 bytes\)"):
        feed_in(SSEParser(LIMIT), b"data: " + b"a" * (LIMIT + 1) + b"\n\n", size)


@pytest.mark.parametrize("size", [1, 13, 16384])
def test_many_data_lines_are_one_event_joined_by_newlines_and_bounded(size):
    lines = b"".join(b"data: %d\n" % i for i in range(2000))
    parser = SSEParser(LIMIT)
    assert feed_in(parser, b'data: {"a":1}\n\n' + lines + b"\n", size) == [
        b'{"a":1}', b"\n".join(b"%d" % i for i in range(2000))]
    assert not parser.pending()
    endless = b'data: {"x":1}\n' * (LIMIT // 8 + 1)  # 7 bytes and a newline each: past the bound
    with pytest.raises(SSEError):
        feed_in(SSEParser(LIMIT), endless, size)


def test_a_line_that_never_ends_is_refused_at_the_bound():
    parser = SSEParser(LIMIT)
    parser.feed(b"data: ")
    fed = 0  # bytes of the line after "data: "
    with pytest.raises(SSEError):
        while fed <= 2 * LIMIT:
            fed += 1000
            parser.feed(b"a" * 1000)
    assert LIMIT < fed + 6 <= LIMIT + 1000


def test_comments_and_other_fields_do_not_count_toward_an_event():
    noise = b": ping\n" * 20000 + b"event: x\n" * 20000
    assert SSEParser(LIMIT).feed(noise + b'data: {"a":1}\n\n') == [b'{"a":1}']


@pytest.mark.parametrize("size", [1, 5, 1 << 20])
@pytest.mark.parametrize("parts", [[20, 43], [20, 20, 22], [0, 0, 62]])
def test_a_multi_line_event_is_measured_as_its_joined_data(parts, size):
    """Lines of 20 + 43 (or 20 + 20 + 22, ...) bytes are 64 bytes of data once joined by newlines:
    exactly a bound of 64, however the reads are cut, and one byte more is refused."""
    def event(extra: int) -> bytes:
        lines = [b"x" * n for n in parts]
        lines[-1] += b"y" * extra
        return b"".join(b"data: " + line + b"\n" for line in lines) + b"\n", b"\n".join(lines)

    raw, joined = event(0)
    assert len(joined) == 64
    assert feed_in(SSEParser(64), raw + b'data: {"b":1}\n\n', size) == [joined, b'{"b":1}']
    raw, _ = event(1)
    with pytest.raises(SSEError):
        feed_in(SSEParser(64), raw, size)
