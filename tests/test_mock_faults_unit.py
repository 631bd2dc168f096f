"""mock_upstream/faults.py on its own, no server: parse_fault's checks and messages, merge, how apply
rewrites a Plan (exact steps and bytes), insert_after, add_pings, split_utf8, FaultStore, describe.
tests/test_mock_faults.py plays the same faults over the wire."""

import dataclasses

import pytest

from mock_upstream.faults import (MALFORMED, MALFORMED_RESPONSES, Fault, FaultError, FaultStore, add_pings, apply,
                                  describe, insert_after, merge, parse_fault, split_utf8)
from mock_upstream.plan import DISCONNECT, DONE_BYTES, STALL, Plan, Step

PING = Step(0.0, b": ping\n\n", event=False)
COMMENT = Step(0.0, b": keep-alive\n\n", event=False)
DONE = Step(0.0, DONE_BYTES, done=True)
DROP = Step(0.0, b"", DISCONNECT, event=False)
CHAT_ERROR = Step(0.0, b'data: {"code":"Internal error","error":"The service encountered an unexpected error"}\n\n')


def ev(n: int) -> Step:
    """Event n: written after n * 10 ms."""
    return Step(n / 100, b'data: {"n":%d}\n\n' % n)


def stream(*steps, **kw) -> Plan:
    return Plan(steps=list(steps), **kw)


def error_message(obj) -> str:
    with pytest.raises(FaultError) as e:
        parse_fault(obj)
    return str(e.value)


# -- Fault, parse_fault -------------------------------------------------------------------------------

def test_a_fault_says_nothing_by_default_and_is_immutable():
    assert dataclasses.astuple(Fault()) == (None,) * 10 + (False, None, None, False, None)
    assert parse_fault({}) == Fault()
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fault().status = 500  # type: ignore[misc]
    assert hash(Fault(status=500)) == hash(Fault(status=500))  # scenarios share them


def test_parse_fault_passes_a_fault_through():
    fault = Fault(status=429)
    assert parse_fault(fault) is fault


def test_parse_fault_reads_every_field_with_its_type():
    fault = parse_fault({"status": 429.0, "error": "slow down", "code": "c", "retry_after": 7, "error_after": 0,
                         "disconnect_after": 3, "disconnect_after_ms": 5, "stall_after": 1, "stall_ms": 2.5,
                         "malformed_after": 2, "no_chunked": True, "slow_headers_ms": 0, "ping_every": 1,
                         "utf8_split": True, "scenario": "story"})
    assert fault == Fault(status=429, error="slow down", code="c", retry_after=7, error_after=0, disconnect_after=3,
                          disconnect_after_ms=5.0, stall_after=1, stall_ms=2.5, malformed_after=2,
                          close_delimited=True, slow_headers_ms=0.0, ping_every=1, utf8_split=True, scenario="story")
    # Whole numbers become int, durations float (429.0 == 429 and 5 == 5.0, so compare the types).
    types = {f.name: type(getattr(fault, f.name)) for f in dataclasses.fields(Fault)}
    assert types == {"status": int, "error": str, "code": str, "retry_after": int, "error_after": int,
                     "disconnect_after": int, "disconnect_after_ms": float, "stall_after": int, "stall_ms": float,
                     "malformed_after": int, "close_delimited": bool, "slow_headers_ms": float, "ping_every": int,
                     "utf8_split": bool, "scenario": str}


def test_parse_fault_null_means_not_given():
    assert parse_fault({"status": None, "error": None, "stall_ms": None}) == Fault()


@pytest.mark.parametrize("obj", [{"status": 400}, {"status": 599}, {"retry_after": 0}, {"stall_ms": 0.5},
                                 {"stall_ms": 1.5}, {"ping_every": 1}, {"close_delimited": False}])
def test_parse_fault_accepts_the_edges(obj):
    fault = parse_fault(obj)
    (key, value), = obj.items()
    assert getattr(fault, key) == value


@pytest.mark.parametrize("obj, message", [
    ([], "a fault must be an object"),
    ("status", "a fault must be an object"),
    ({"nope": 1}, "unknown fault field 'nope'"),
    ({"status": 399}, "status must be an HTTP error status (400-599)"),
    ({"status": 600}, "status must be an HTTP error status (400-599)"),
    ({"status": 200}, "status must be an HTTP error status (400-599)"),
    ({"ping_every": 0}, "ping_every must be at least 1"),
    ({"close_delimited": 1}, "close_delimited must be true or false"),
    ({"no_chunked": "yes"}, "close_delimited must be true or false"),
    ({"utf8_split": 0}, "utf8_split must be true or false"),
    ({"error": 5}, "error must be a string"),
    ({"scenario": ["story"]}, "scenario must be a string"),
    ({"stall_ms": True}, "stall_ms must be a non-negative number"),
    ({"stall_ms": "5"}, "stall_ms must be a non-negative number"),
    ({"stall_ms": -0.5}, "stall_ms must be a non-negative number"),
    ({"retry_after": -1}, "retry_after must be a non-negative number"),
    ({"status": -1}, "status must be a non-negative number"),
    ({"retry_after": 1.5}, "retry_after must be a whole number"),
    ({"error_after": 0.5}, "error_after must be a whole number"),
])
def test_parse_fault_refuses_with_a_message(obj, message):
    assert error_message(obj) == message


# -- merge, describe ----------------------------------------------------------------------------------

def test_merge_later_faults_win_field_by_field():
    assert merge() is None
    assert merge(None, None) is None
    assert merge(Fault()) is None  # nothing said
    scenario = Fault(status=429, error="from the scenario", close_delimited=True)
    runtime = Fault(error="at run time", utf8_split=True)
    assert merge(scenario, None, runtime) == Fault(status=429, error="at run time", close_delimited=True,
                                                   utf8_split=True)
    # False and None mean "not this one": they never undo an earlier fault's field.
    assert merge(scenario, Fault()) == scenario


def test_merge_keeps_zeros():
    """0 is a value (disconnect before any event, a stall of no time), not "not given" (0 == False)."""
    zeros = Fault(retry_after=0, error_after=0, disconnect_after=0, disconnect_after_ms=0.0, stall_after=0,
                  stall_ms=0.0, malformed_after=0, slow_headers_ms=0.0)
    assert merge(zeros) == zeros
    assert merge(Fault(stall_after=2, stall_ms=5000.0), Fault(stall_ms=0.0)) == Fault(stall_after=2, stall_ms=0.0)


def test_describe_lists_the_fields_given():
    assert describe(Fault()) == {}
    assert describe(Fault(status=429, retry_after=7, close_delimited=True, utf8_split=False, scenario="story")) == {
        "status": 429, "retry_after": 7, "close_delimited": True, "scenario": "story"}
    assert describe(Fault(error_after=0, stall_ms=0.0)) == {"error_after": 0, "stall_ms": 0.0}


# -- apply: HTTP-level faults -------------------------------------------------------------------------

def test_apply_without_a_fault_is_the_plan_itself():
    plan = stream(ev(1), DONE)
    assert apply(plan, None) is plan


def test_status_fault_replaces_the_plan_with_an_error():
    plan = apply(stream(ev(1), DONE), Fault(status=429, retry_after=7))
    assert plan == Plan(429, {"Retry-After": "7"}, False,
                        b'{"code":"Some resource has been exhausted","error":"mock fault: HTTP 429"}')
    plan = apply(stream(ev(1), DONE), Fault(status=503, error="overloaded", code="my code", ping_every=1,
                                            close_delimited=True, disconnect_after_ms=5, slow_headers_ms=250))
    # The stream faults do not apply to an error answer; disconnect_after_ms neither (it has a status).
    assert plan == Plan(503, {}, False, b'{"code":"my code","error":"overloaded"}', slow_headers=0.25)


def test_retry_after_without_status_adds_the_header():
    plan = apply(stream(ev(1), DONE, headers={"X-Request-Id": "r1"}), Fault(retry_after=0))
    assert plan == stream(ev(1), DONE, headers={"X-Request-Id": "r1", "Retry-After": "0"})


def test_slow_headers_and_disconnect_after_ms():
    assert apply(stream(ev(1), DONE), Fault(slow_headers_ms=1500)) == stream(ev(1), DONE, slow_headers=1.5)
    assert apply(stream(ev(1), DONE), Fault(slow_headers_ms=0)) == stream(ev(1), DONE)
    assert apply(stream(ev(1), DONE), Fault(disconnect_after_ms=50)) == stream(ev(1), DONE, disconnect_at=0.05)
    assert apply(stream(ev(1), DONE), Fault(disconnect_after_ms=0)) == stream(ev(1), DONE, disconnect_at=0.0)


def test_a_non_stream_answer_keeps_its_body_under_stream_faults():
    whole = Plan(200, {}, False, b'{"ok":true}')
    fault = Fault(close_delimited=True, ping_every=1, error_after=0, utf8_split=True, disconnect_after_ms=20)
    assert apply(whole, fault) == Plan(200, {}, False, b'{"ok":true}', disconnect_at=0.02)


def test_close_delimited_is_kept_or_added():
    assert apply(stream(ev(1), DONE), Fault(close_delimited=True)) == stream(ev(1), DONE, close_delimited=True)
    already = stream(ev(1), DONE, close_delimited=True)
    assert apply(already, Fault(ping_every=5)) == stream(ev(1), DONE, close_delimited=True)


# -- apply: stream faults -----------------------------------------------------------------------------

def test_ping_every():
    plan = apply(Plan(steps=(ev(1), ev(2), COMMENT, ev(3), DONE)), Fault(ping_every=2))
    assert plan.steps == [ev(1), ev(2), PING, COMMENT, ev(3), DONE]


def test_malformed_after_chat_and_responses():
    assert apply(stream(ev(1), ev(2), DONE), Fault(malformed_after=1)).steps == [
        ev(1), Step(0.0, MALFORMED), ev(2), DONE]
    assert MALFORMED.startswith(b'data: {"id":"chatcmpl-mock-malformed"') and MALFORMED.endswith(b'"oops"\n\n')
    assert apply(stream(ev(1), ev(2), api="responses"), Fault(malformed_after=0)).steps == [
        Step(0.0, MALFORMED_RESPONSES), ev(1), ev(2)]
    assert MALFORMED_RESPONSES.startswith(b"event: response.output_text.delta\ndata: {")


def test_error_after_chat():
    assert apply(stream(ev(1), ev(2), ev(3), DONE), Fault(error_after=2)).steps == [ev(1), ev(2), CHAT_ERROR]
    assert apply(stream(ev(1), DONE), Fault(error_after=0, error="boom", code="my code")).steps == [
        Step(0.0, b'data: {"code":"my code","error":"boom"}\n\n')]
    # More events asked than the stream has: the error comes last (after [DONE]).
    assert apply(stream(ev(1), DONE), Fault(error_after=5)).steps == [ev(1), DONE, CHAT_ERROR]


def test_error_after_responses():
    plan = apply(stream(ev(1), ev(2), ev(3), api="responses"), Fault(error_after=2))
    assert plan.steps == [ev(1), ev(2), Step(0.0, b'event: error\ndata: {"type":"error","code":"server_error",'
                                                  b'"message":"The service encountered an unexpected error",'
                                                  b'"param":null,"sequence_number":2}\n\n')]
    plan = apply(stream(ev(1), api="responses"), Fault(error_after=1, error="boom", code="rate_limit_exceeded"))
    assert plan.steps == [ev(1), Step(0.0, b'event: error\ndata: {"type":"error","code":"rate_limit_exceeded",'
                                           b'"message":"boom","param":null,"sequence_number":1}\n\n')]


def test_disconnect_after():
    assert apply(stream(ev(1), ev(2), DONE), Fault(disconnect_after=1)).steps == [ev(1), DROP]
    assert apply(stream(ev(1), ev(2), DONE), Fault(disconnect_after=0)).steps == [DROP]


def test_stall_after():
    assert apply(stream(ev(1), ev(2), DONE), Fault(stall_after=1)).steps == [
        ev(1), Step(0.0, b"", STALL, hold=600.0, event=False)]  # the default: 600000 ms
    assert apply(stream(ev(1), ev(2), DONE), Fault(stall_after=2, stall_ms=250)).steps == [
        ev(1), ev(2), Step(0.0, b"", STALL, hold=0.25, event=False)]
    assert apply(stream(ev(1), DONE), Fault(stall_after=0, stall_ms=0)).steps == [
        Step(0.0, b"", STALL, hold=0.0, event=False)]


def test_one_cut_wins_disconnect_then_error_then_stall():
    plan = stream(ev(1), ev(2), ev(3), ev(4), DONE)
    assert apply(plan, Fault(disconnect_after=3, error_after=1, stall_after=2)).steps == [ev(1), ev(2), ev(3), DROP]
    plan = stream(ev(1), ev(2), ev(3), ev(4), DONE)
    assert apply(plan, Fault(error_after=3, stall_after=1)).steps == [ev(1), ev(2), ev(3), CHAT_ERROR]


def test_faults_combine_in_order_split_pings_malformed_cut():
    e = Step(0.03, 'data: {"c":"é"}\n\n'.encode())
    steps = (ev(1), e, ev(4), DONE)
    plan = apply(Plan(steps=steps), Fault(utf8_split=True, ping_every=1, malformed_after=1, error_after=3))
    # Nothing lands between the two halves of the split character.
    assert plan.steps == [ev(1), Step(0.0, MALFORMED), PING, Step(0.03, b'data: {"c":"\xc3', event=False),
                          Step(0.0, b'\xa9"}\n\n'), CHAT_ERROR]
    assert steps == (ev(1), e, ev(4), DONE)  # the recording's steps are shared: never changed
    assert apply(Plan(steps=steps), Fault(utf8_split=True, ping_every=1)).steps == [
        ev(1), PING, Step(0.03, b'data: {"c":"\xc3', event=False), Step(0.0, b'\xa9"}\n\n'), PING, ev(4), PING, DONE]


# -- insert_after, add_pings, split_utf8 --------------------------------------------------------------

def test_insert_after_counts_events_not_comments():
    steps = [COMMENT, ev(1), COMMENT, ev(2)]
    x = Step(0.5, b"x")
    assert insert_after(steps, 0, x) == [x, COMMENT, ev(1), COMMENT, ev(2)]
    assert insert_after(steps, 1, x) == [COMMENT, ev(1), x, COMMENT, ev(2)]
    assert insert_after(steps, 1, x, truncate=True) == [COMMENT, ev(1), x]
    assert insert_after(steps, 2, x) == [COMMENT, ev(1), COMMENT, ev(2), x]
    assert insert_after(steps, 9, x, truncate=True) == [COMMENT, ev(1), COMMENT, ev(2), x]
    assert insert_after([], 0, x) == [x]
    assert steps == [COMMENT, ev(1), COMMENT, ev(2)]


def test_add_pings_after_every_n_events_never_after_done():
    steps = [ev(1), ev(2), COMMENT, ev(3), DONE]
    assert add_pings(steps, 1) == [ev(1), PING, ev(2), PING, COMMENT, ev(3), PING, DONE]
    assert add_pings(steps, 2) == [ev(1), ev(2), PING, COMMENT, ev(3), DONE]
    assert add_pings(steps, 3) == [ev(1), ev(2), COMMENT, ev(3), PING, DONE]
    assert add_pings([COMMENT, COMMENT], 1) == [COMMENT, COMMENT]


def test_split_utf8_cuts_the_first_multibyte_character_only():
    steps = [Step(0.01, b"data: ab\n\n"), Step(0.02, "data: né€\n\n".encode()), Step(0.03, "data: ü\n\n".encode())]
    # The second write ends the event: it is the one that counts.
    assert split_utf8(steps) == [Step(0.01, b"data: ab\n\n"), Step(0.02, b"data: n\xc3", event=False),
                                 Step(0.0, b"\xa9\xe2\x82\xac\n\n"), Step(0.03, "data: ü\n\n".encode())]
    assert split_utf8(steps[:1]) == steps[:1]
    assert split_utf8([]) == []
    # A comment stays uncounted, in both halves.
    assert split_utf8([Step(0.0, ": é\n\n".encode(), event=False)]) == [
        Step(0.0, b": \xc3", event=False), Step(0.0, b"\xa9\n\n", event=False)]


def test_split_utf8_cuts_after_a_lead_byte_not_a_continuation_byte():
    # 0x80-0xBF continue a character; 0xC0 and up start one.
    assert split_utf8([Step(0.0, b"a\x80\xbf\xc0b")]) == [Step(0.0, b"a\x80\xbf\xc0", event=False), Step(0.0, b"b")]
    assert split_utf8([Step(0.0, b"\xf0\x9f\x98\x80")]) == [Step(0.0, b"\xf0", event=False),
                                                            Step(0.0, b"\x9f\x98\x80")]


# -- FaultStore ---------------------------------------------------------------------------------------

def test_store_without_times_keeps_the_fault():
    store, fault = FaultStore(), Fault(status=500)
    assert store.take("t1") is None and store.take(None) is None
    store.set("t1", fault)
    assert [store.take("t1") for _ in range(3)] == [fault, fault, fault]
    assert store.take("t2") is None and store.take(None) is None
    assert store.snapshot() == {"t1": {"fault": {"status": 500}, "times": None}}


def test_store_times_run_out():
    store, fault = FaultStore(), Fault(error_after=2)
    store.set("t1", fault, times=2)
    assert store.snapshot() == {"t1": {"fault": {"error_after": 2}, "times": 2}}
    assert store.take("t1") is fault
    assert store.snapshot() == {"t1": {"fault": {"error_after": 2}, "times": 1}}
    assert store.take("t1") is fault
    assert store.snapshot() == {}
    assert store.take("t1") is None
    store.set("t1", fault, times=1)
    assert [store.take("t1"), store.take("t1")] == [fault, None]
    store.set("t2", Fault(disconnect_after=0), times=1)
    assert store.snapshot() == {"t2": {"fault": {"disconnect_after": 0}, "times": 1}}


def test_store_any_test_id_is_the_fallback():
    store, mine, anyone = FaultStore(), Fault(status=429), Fault(status=503)
    store.set("*", anyone, times=3)
    store.set("t1", mine)
    assert store.take("t1") is mine
    assert store.take("t2") is anyone and store.take(None) is anyone and store.take("") is anyone
    assert store.take("t2") is None
    assert store.take("t1") is mine


def test_store_clear_one_or_all():
    store, fault = FaultStore(), Fault(status=500)
    store.set("t1", fault)
    store.set("t2", fault, times=5)
    store.clear("missing")
    store.clear("t1")
    assert store.snapshot() == {"t2": {"fault": {"status": 500}, "times": 5}}
    store.set("t1", fault)
    store.clear()
    assert store.snapshot() == {} and store.take("t1") is None and store.take("t2") is None
