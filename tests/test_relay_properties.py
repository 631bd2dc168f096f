"""The relay through a real gateway, on generated upstream streams sent in generated cuts (tests/
cut_upstream.py): whatever the line ends (LF, CRLF, lone CR), comments, multi-line `data:`, multi-byte
characters and read boundaries, the client receives exactly the expected events: each object event
as `data: <the upstream's JSON>` (a multi-line payload as several `data:` lines, which an SSE reader
joins back into the same JSON), `[DONE]` when the upstream sent it, and for an event that is valid
JSON but not an object the documented 502 error event, never "internal error"."""

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests import hardening_helpers as hh
from tests.cut_upstream import ask, gateway_before

RELAY = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NOT_AN_OBJECT = b'data: {"error":"API error: the upstream sent an event that is not a JSON object"}\n\n'
DONE = b"data: [DONE]\n\n"
EOLS = [b"\n", b"\r\n", b"\r"]


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    with gateway_before(str(tmp_path_factory.mktemp("relay-props"))) as relay:
        yield relay


def cut(raw: bytes, points) -> list:
    points = sorted(set(min(k, len(raw)) for k in points))
    return [raw[a:b] for a, b in zip([0] + points, points + [len(raw)])]


def framed(lines: list, eols: list) -> bytes:
    """Lines joined with the given line ends (a CR followed by an empty line's LF would be one CRLF:
    that empty line gets a CRLF instead, so the stream means what the test meant)."""
    raw, previous = b"", None
    for line, eol in zip(lines, eols):
        if previous == b"\r" and not line and eol == b"\n":
            eol = b"\r\n"
        raw += line + eol
        previous = eol
    return raw


TEXT = st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from(["é", "€", "🚀", "日"]), max_size=10)
OBJECTS = st.fixed_dictionaries({"id": st.just("chatcmpl-p"), "choices": st.just([{"index": 0}])},
                                optional={"c": TEXT, "n": st.integers()})
NON_OBJECTS = st.sampled_from([b"1", b"[1,2]", b'"text"', b"null", b"true", b'["\xc3\xa9"]'])


@st.composite
def upstream_streams(draw):
    """(upstream lines, the client's expected body, expected status)."""
    lines, expected, status = [], b"", 200
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            lines += [b": ping " + draw(TEXT).replace("\r", "").replace("\n", "").encode(), b""]
        obj = draw(OBJECTS)
        if draw(st.booleans()):
            payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        else:  # the same JSON over several data: lines
            payload = json.dumps(obj, ensure_ascii=False, indent=1).encode()
        payload = payload.replace(b"\r", b"")
        lines += [b"data: " + part for part in payload.split(b"\n")] + [b""]
        expected += b"data: " + payload.replace(b"\n", b"\ndata: ") + b"\n\n"
    if draw(st.booleans()):
        lines += [b"data: " + draw(NON_OBJECTS), b""]
        status = 200 if expected else 502  # nothing sent yet: the error's own status
        expected += NOT_AN_OBJECT
    else:
        lines += [b"data: [DONE]", b""]
        expected += DONE
    return lines, expected, status


@RELAY
@given(case=upstream_streams(), eols=st.lists(st.sampled_from(EOLS), min_size=80, max_size=80),
       points=st.lists(st.integers(0, 2000), max_size=6))
def test_any_stream_in_any_cuts_reaches_the_client_as_expected(relay, case, eols, points):
    lines, expected, status = case
    eols = (eols * (len(lines) // len(eols) + 1))[:len(lines)]
    r = ask(relay, cut(framed(lines, eols), points))
    assert (r.status_code, r.content) == (status, expected)


@RELAY
@given(contents=st.integers(0, 6), points=st.lists(st.integers(0, 600), max_size=3), usage=st.booleans())
def test_a_stream_whose_last_reads_carry_content_usage_and_done(relay, contents, points, usage):
    """The usage event (always asked upstream) after content events, often all in one read: the client
    gets every content event, the usage event only if it asked for it, then [DONE]."""
    content = b"".join(b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"%d"}}]}\n\n' % i
                       for i in range(contents))
    usage_event = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d,' \
                  b'"total_tokens":%d}}\n\n' % (contents, contents + 3)
    raw = content + usage_event + DONE
    r = ask(relay, cut(raw, points), usage=usage)
    assert (r.status_code, r.content) == (200, content + (usage_event if usage else b"") + DONE)
    line = hh.access_line(relay[1], r.headers["X-Request-Id"])
    assert line["usage"]["total_tokens"] == contents + 3 and "usage_estimated" not in line


@pytest.mark.parametrize("payload", [b"1", b"[]", b'"s"', b"null", b"true", b"1.5"])
@pytest.mark.parametrize("first", [True, False], ids=["first", "after-an-event"])
def test_an_event_that_is_json_but_not_an_object_is_the_502_event(relay, payload, first):
    pieces = [] if first else [b'data: {"id":"a","choices":[]}\n\n']
    pieces += [b"data: " + payload + b"\n\n", b'data: {"id":"never"}\n\ndata: [DONE]\n\n']
    r = ask(relay, pieces)
    assert r.status_code == (502 if first else 200)
    assert r.content == (b"" if first else b'data: {"id":"a","choices":[]}\n\n') + NOT_AN_OBJECT
    gateway = relay[1]
    line = hh.access_line(gateway, r.headers["X-Request-Id"])
    assert line["ended"] == "upstream_error" and line["status"] == r.status_code
    assert "Traceback" not in gateway.stderr


def test_a_multibyte_character_cut_between_every_pair_of_reads(relay):
    """One event holding 2-, 3- and 4-byte characters, cut at every byte in turn (one request each)."""
    event = 'data: {"id":"u","c":"é€🚀"}\n\n'.encode()
    for k in range(len(event) - 12, len(event) - 1):  # every cut inside and around the characters
        r = ask(relay, [event[:k], event[k:], DONE])
        assert (r.status_code, r.content) == (200, event + DONE), k


@pytest.mark.parametrize("second", [b'data: {"b":2}]}\n\n', b'data: {"b":2}]}\n\ndata: {"c":3}\n\n'])
def test_a_multi_line_event_cut_where_its_next_line_looks_like_a_whole_event(relay, second):
    """A read that starts with what looks like a whole `data: {...}` event may be the last line of
    the event the read before began: it must join that event, not go out on its own."""
    first = b'data: {"id":"a","choices":[]}\n\ndata: {"a":[\n'
    r = ask(relay, [first, second, DONE])
    assert (r.status_code, r.content) == (200, first + second + DONE)


def test_an_upstream_that_sends_more_after_done_is_let_finish_and_its_connection_reused(relay):
    """After [DONE] the client's response ends, but the upstream's is read to its end (docs/api.md: it
    gets DONE_GRACE to end by itself), so curl keeps the connection for the next request."""
    upstream = relay[0]
    event = b'data: {"id":"a","choices":[]}\n\n'
    first = ask(relay, [event, DONE, b": a comment after the end\n\n", b'data: {"id":"late"}\n\n'])
    assert (first.status_code, first.content) == (200, event + DONE)
    # The client's response ended at [DONE]; the upstream's ends a moment later, when curl puts the
    # connection back in its cache (the gateway then holds no stream and no upstream transfer).
    hh.wait_idle(relay[1])
    second = ask(relay, [event, DONE])
    assert (second.status_code, second.content) == (200, event + DONE)
    assert upstream.peers[-1] == upstream.peers[-2]
