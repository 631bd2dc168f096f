"""Properties of the SSE parser (tornado_grok/sse.py) on generated and recorded streams: however the
bytes are cut into reads, the parser yields what a reference reading of the WHATWG rules yields,
for LF, CRLF and lone CR line ends, comments, other fields, multi-line `data:` and multi-byte UTF-8
characters cut anywhere; and the fast path (plain_events) never disagrees with the parser."""

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mock_upstream import recordings
from tornado_grok import sse
from tornado_grok.sse import SSEError, SSEParser

PROPS = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
EOLS = [b"\n", b"\r\n", b"\r"]
LIMIT = 8 * 1024 * 1024  # README.md: an upstream event over 8 MiB ends the stream with a 502 event
LINE_END = re.compile(rb"\r\n|\r|\n")


def reference(raw: bytes):
    """(events, comments) of a whole stream, read line by line as the spec says (an oracle written
    independently of the parser: split on every line end, then interpret each complete line)."""
    lines = LINE_END.split(raw)[:-1]  # the last piece has no line end yet: not a line
    events, comments, data = [], 0, None
    for line in lines:
        if not line:
            if data is not None:
                events.append(data)
            data = None
        elif line.startswith(b":"):
            comments += 1
        else:
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data = value if data is None else data + b"\n" + value
    return events, comments


def feed_pieces(pieces):
    p = SSEParser()
    out = []
    for piece in pieces:
        out.extend(p.feed(piece))
    return out, p


def cut(raw: bytes, points) -> list:
    points = sorted(set(min(max(0, k), len(raw)) for k in points))
    return [raw[a:b] for a, b in zip([0] + points, points + [len(raw)])]


# Text values: any character but the line ends, with multi-byte ones (2, 3 and 4 bytes) often.
VALUE_CHARS = st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)) | st.sampled_from(
    ["é", "€", "日", "🚀", "\u2028", "\x00", "{", "}", '"', ":"])
values = st.text(VALUE_CHARS, max_size=12)


@st.composite
def streams(draw):
    """(raw bytes, expected events, expected comment count) of a generated event stream."""
    lines = []  # (content, counts as a comment)
    expected = []
    for _ in range(draw(st.integers(0, 6))):
        data = None
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["data", "data", "data-nospace", "comment", "field"]))
            value = draw(values)
            if kind == "comment":
                lines.append(b":" + value.encode())
            elif kind == "field":
                lines.append(draw(st.sampled_from([b"event: message", b"id: 7", b"retry: 100", b"x-other: 1"])))
            else:
                raw_value = value.encode()
                if kind == "data":
                    lines.append(b"data: " + raw_value)
                else:
                    lines.append(b"data:" + raw_value)
                    if raw_value.startswith(b" "):
                        raw_value = raw_value[1:]  # one leading space is part of the field syntax
                data = raw_value if data is None else data + b"\n" + raw_value
        lines.append(b"")  # the blank line that ends the event
        if data is not None:
            expected.append(data)
    raw = b""
    previous = None
    for content in lines:
        eol = draw(st.sampled_from(EOLS))
        if previous == b"\r" and not content and eol == b"\n":
            eol = b"\r\n"  # a CR then an LF is one line end, not an empty line: keep the lines we meant
        raw += content + eol
        previous = eol
    comments = sum(1 for c in lines if c.startswith(b":"))
    return raw, expected, comments


@PROPS
@given(case=streams(), points=st.lists(st.integers(0, 400), max_size=8))
def test_any_stream_cut_anywhere_gives_the_reference_events(case, points):
    raw, expected, comments = case
    assert reference(raw) == (expected, comments)  # the generator and the oracle agree
    got, p = feed_pieces(cut(raw, points))
    assert got == expected
    assert p.comments == comments
    assert not p.pending()


@PROPS
@given(case=streams(), points=st.lists(st.integers(0, 400), max_size=6), tail=values.filter(bool))
def test_an_unfinished_event_stays_pending(case, points, tail):
    raw, expected, _ = case
    raw += b"data: " + tail.encode()  # no line end: not an event yet
    got, p = feed_pieces(cut(raw, points))
    assert got == expected
    assert p.pending()


STREAMED = sorted(n for n, r in recordings.load_all().items() if r.kind == "stream")


@pytest.mark.parametrize("name", STREAMED)
@pytest.mark.parametrize("eol", EOLS, ids=["lf", "crlf", "cr"])
def test_recorded_streams_cut_at_every_byte(name, eol):
    """Each bundled recording (as the mock sends it, with the line ends swapped) cut in two at every
    byte: multi-byte characters, line ends and events are all cut somewhere."""
    plan = recordings.load_all()[name].plan("grok-test", True, True)
    raw = b"".join(step.data for step in plan.steps).replace(b"\n", eol)
    expected, _ = reference(raw)
    assert expected and feed_pieces([raw])[0] == expected
    for k in range(len(raw) + 1):
        got, p = feed_pieces([raw[:k], raw[k:]])
        assert got == expected, k
        assert not p.pending() or raw.rstrip(b"\r\n") != raw


@pytest.mark.parametrize("eol", EOLS, ids=["lf", "crlf", "cr"])
def test_multibyte_characters_cut_at_every_pair_of_boundaries(eol):
    text = "é€🚀日\U0001F600"
    raw = (b"data: " + json.dumps({"c": text}, ensure_ascii=False).encode() + eol + b": c\xc3\xa9" + eol + eol
           + b"data: " + text.encode() + eol + b"data:" + text.encode() + eol + eol)
    expected = [json.dumps({"c": text}, ensure_ascii=False).encode(), (text + "\n" + text).encode()]
    for i in range(len(raw) + 1):
        for j in range(i, len(raw) + 1):
            got, p = feed_pieces([raw[:i], raw[i:j], raw[j:]])
            assert got == expected, (i, j)
            assert [e.decode("utf-8") for e in got]  # whole characters only, never U+FFFD
            assert p.comments == 1


def test_a_cr_is_forgotten_once_the_next_read_did_not_start_with_lf():
    got, _ = feed_pieces([b"data: a\r", b": c\n", b"\ndata: b\n\n"])
    assert got == [b"a", b"b"]


def test_a_lone_cr_inside_a_line_ends_it_even_on_the_fast_path():
    read = b'data: {"a":"x\r"}\n\n'
    assert sse.plain_events(read) is None
    assert SSEParser().feed(read) == [b'{"a":"x']


def test_cr_at_the_end_of_a_read_then_lf():
    """A CRLF cut between its CR and LF is one line end; a CR then CR is two."""
    got, _ = feed_pieces([b"data: a\r", b"\ndata: b\r", b"\r"])
    assert got == [b"a\nb"]
    got, _ = feed_pieces([b"data: a\r", b"\r", b"\ndata: b\n\n"])
    assert got == [b"a", b"b"]


def test_an_event_just_under_the_limit_is_accepted_and_one_byte_over_is_not():
    """The limit bounds what waits in the buffer: an event arriving over many reads (as a big one
    always does: libcurl reads at most 16 KiB at a time) is refused once it passes MAX_EVENT_BYTES."""
    def fed(size):
        pieces = [b"data:"] + [b"x" * (1 << 20)] * (size >> 20) + [b"x" * (size & ((1 << 20) - 1)), b"\n\n"]
        return feed_pieces(pieces)[0]
    assert fed(LIMIT - 64) == [b"x" * (LIMIT - 64)]
    with pytest.raises(SSEError, match=r"^the upstream sent an event larger than max_event_size \(8388608 bytes\)$"):
        fed(LIMIT + 1)
    # Exactly at the limit is kept, one byte more is not: an unfinished line (whose bound allows the
    # 6 bytes of a "data: " prefix, since a line's field is not known until it ends)...
    p = SSEParser()
    assert p.feed(b"d" * (LIMIT + 6)) == []
    with pytest.raises(SSEError):
        p.feed(b"d")
    # ...and the data of an unfinished event.
    p = SSEParser()
    assert p.feed(b"data:" + b"x" * LIMIT + b"\n") == [] and p.pending()
    with pytest.raises(SSEError):
        p.feed(b"data:\n")
    # An event of several data lines counts all of them.
    p = SSEParser()
    p.feed(b"data:" + b"x" * (LIMIT // 2) + b"\n")
    with pytest.raises(SSEError):
        p.feed(b"data:" + b"x" * (LIMIT // 2) + b"\n")


def test_data_event_frames_one_payload():
    assert sse.data_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert SSEParser().feed(sse.data_event(b"[1]") + sse.DONE + sse.KEEPALIVE) == [b"[1]", sse.DONE_PAYLOAD]


# The fast path: ordinary reads of single-line object events, possibly ending in [DONE] and a tail.
objects = st.dictionaries(st.sampled_from(["id", "c", "n"]), st.text(VALUE_CHARS, max_size=8) | st.integers(),
                          max_size=3).map(lambda o: json.dumps(o, ensure_ascii=False).encode())
odd_events = st.sampled_from([b": ping\n\n", b"data: [1]\n\n", b'data: "s"\n\n', b"event: x\ndata: {}\n\n",
                              b"data: {}\r\n\r\n", b"data: {\ndata: }\n\n", b"\n", b"data: {}\n", b"id: 1\n\n",
                              b'data: {"a":"x\r"}\n\n', b'data: {"a":"\rx"}\n\n'])


@PROPS
@given(events=st.lists(objects.map(lambda o: b"data: " + o + b"\n\n") | odd_events, max_size=6),
       done=st.booleans(), tail=st.binary(max_size=12))
def test_the_fast_path_agrees_with_the_parser(events, done, tail):
    read = b"".join(events) + (sse.DONE if done else b"") + tail
    fast = sse.plain_events(read)
    if fast is None:
        return  # the parser takes the read: nothing to compare
    block, count, saw_done, rest = fast
    assert block + (sse.DONE if saw_done else b"") + rest == read
    parsed = SSEParser().feed(block + (sse.DONE if saw_done else b""))
    assert len(parsed) == count + saw_done
    assert all(e[:1] == b"{" and e[-1:] == b"}" and b"\n" not in e for e in parsed[:count])
    assert [sse.data_event(e) for e in parsed[:count]] == [b + b"\n\n" for b in block.split(b"\n\n")[:-1]]
    assert saw_done == (parsed[-1:] == [sse.DONE_PAYLOAD] and count + 1 == len(parsed))
    assert rest.rfind(b"\n\n") < 0  # everything complete was taken


@PROPS
@given(events=st.lists(objects, min_size=1, max_size=6), done=st.booleans(),
       tail=st.binary(max_size=12).filter(lambda t: b"\n\n" not in t and b"\r" not in t and not t.startswith(b"\n")))
def test_ordinary_reads_take_the_fast_path(events, done, tail):
    """A read of ordinary events is never sent to the slow path by mistake."""
    read = b"".join(b"data: " + o + b"\n\n" for o in events) + (sse.DONE if done else b"") + tail
    fast = sse.plain_events(read)
    assert fast is not None
    assert fast == (b"".join(b"data: " + o + b"\n\n" for o in events), len(events), done, tail)
