"""The gRPC path over several upstreams, on the wire: two bundled mocks, each with its gRPC face named
by `grpc = "127.0.0.1:PORT"` in its [[upstreams]] entry, "a" (weight 1000: tried first) and "b".
Every mock requires its own key (--require-key), so each OK shows the call carried its upstream's key.

Failover before the first response message (RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL, a refused
port, a first message that does not come), none after it; a cool-down keeps "a" out; a deferred id
goes back to the upstream that issued it; the access log and metrics name the upstream.
"""

import uuid

import grpc
import pytest
import requests
from xai_sdk.proto import chat_pb2, chat_pb2_grpc, deferred_pb2

from tests import hardening_helpers as hh
from tests import upstreams_helpers as uh


@pytest.fixture(scope="module")
def mocks():
    yield from uh.two_mocks()


def grpc_upstream(name, mock, grpc_address=None, **fields):
    return uh.upstream(name, mock, grpc=grpc_address or mock.grpc, grpc_tls=False, **fields)


@pytest.fixture(scope="module")
def pool(mocks, tmp_path_factory):
    g, key = uh.start_pool(str(tmp_path_factory.mktemp("grpc-pool")),
                           [grpc_upstream("a", mocks["a"], weight=1000), grpc_upstream("b", mocks["b"], weight=1)],
                           {"circuit_failures": 1000, "upstream_cooldown": 0, "upstream_attempts": 3,
                            "failover_first_event_timeout": 1.0, "failover_whole_timeout": 1.0})
    yield g, key
    g.stop()


def new_test_id() -> str:
    return "g-" + uuid.uuid4().hex[:12]


def request() -> chat_pb2.GetCompletionsRequest:
    return chat_pb2.GetCompletionsRequest(model="grok-4.3", messages=[
        chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="hi")])])


def metadata(key: str, tid: str, request_id: str) -> tuple:
    return (("authorization", "Bearer " + key), ("x-mock-test-id", tid), ("x-request-id", request_id))


def complete(g, key, tid, stream: bool) -> tuple:
    """(the answer's text, its request id): a whole GetCompletion or a GetCompletionChunk stream."""
    request_id = "req-" + uuid.uuid4().hex
    with grpc.insecure_channel(g.grpc) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        if stream:
            chunks = list(stub.GetCompletionChunk(request(), metadata=metadata(key, tid, request_id), timeout=30))
            text = "".join(c.outputs[0].delta.content for c in chunks if c.outputs)
        else:
            text = stub.GetCompletion(request(), metadata=metadata(key, tid, request_id), timeout=30).outputs[0].message.content
    return text, request_id


def statuses(mock, tid) -> list:
    return [e["status"] for e in uh.seen(mock, tid)]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("status,code", [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (502, "UNAVAILABLE"),
                                         (503, "UNAVAILABLE")])
def test_a_failed_status_goes_to_the_next_upstream(pool, mocks, status, code, stream):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": status})
    text, request_id = complete(g, key, tid, stream)
    assert text == "Mock answer to: hi"
    assert statuses(mocks["a"], tid) == [code]
    assert statuses(mocks["b"], tid) == ["OK"]
    line = hh.access_line(g, request_id, timeout=20)
    assert line["upstream"] == "b" and line["failovers"] == 1 and line["status"] == "OK"


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_a_stall_before_the_first_message_goes_to_the_next_upstream(pool, mocks, stream):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"stall_after": 0} if stream else {"slow_headers_ms": 600000})
    text, request_id = complete(g, key, tid, stream)
    assert text == "Mock answer to: hi"
    assert statuses(mocks["b"], tid) == ["OK"]
    entry = mocks["a"].wait_ended(test_id=tid, timeout=10)
    assert entry["ended"] == "client_closed"  # the gateway cancelled the stalled attempt
    line = hh.access_line(g, request_id, timeout=20)
    assert line["upstream"] == "b" and line["failovers"] == 1


def test_no_failover_after_the_first_message(pool, mocks):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"error_after": 2})
    request_id = "req-" + uuid.uuid4().hex
    got = []
    with grpc.insecure_channel(g.grpc) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            for chunk in chat_pb2_grpc.ChatStub(channel).GetCompletionChunk(
                    request(), metadata=metadata(key, tid, request_id), timeout=30):
                got.append(chunk)
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert len(got) == 2  # the two messages the client had, then the upstream's status
    assert statuses(mocks["a"], tid) == ["INTERNAL"]
    assert uh.seen(mocks["b"], tid) == []  # the client had a message: nobody else was asked
    line = hh.access_line(g, request_id, timeout=20)
    assert line["upstream"] == "a" and "failovers" not in line


def test_a_request_error_does_not_fail_over(pool, mocks):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 400})
    with pytest.raises(grpc.RpcError) as raised:
        complete(g, key, tid, False)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert statuses(mocks["a"], tid) == ["INVALID_ARGUMENT"] and uh.seen(mocks["b"], tid) == []


def test_a_stored_id_goes_back_to_its_upstream(pool, mocks):
    """"b" stores the completion and issues its id (a fault on "a" sends the call there); its GET and
    DELETE go to "b", though "a" is picked first for anything else ("a" would say NOT_FOUND)."""
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 503})
    stored = request()
    stored.store_messages = True
    with grpc.insecure_channel(g.grpc) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        answer = stub.GetCompletion(stored, metadata=metadata(key, tid, "r1-" + tid), timeout=30)
        upstream_id, _, tag = answer.id.rpartition(".")
        assert upstream_id.startswith("chatcmpl-mock-") and len(tag) == 26
        tid2 = new_test_id()
        again = stub.GetStoredCompletion(chat_pb2.GetStoredCompletionRequest(response_id=answer.id),
                                         metadata=metadata(key, tid2, "r2-" + tid), timeout=30)
        assert again.id == answer.id and again.outputs[0].message.content == "Mock answer to: hi"
        assert [e["body"]["response_id"] for e in uh.seen(mocks["b"], tid2)] == [upstream_id]
        assert uh.seen(mocks["a"], tid2) == []
        tid3 = new_test_id()
        deleted = stub.DeleteStoredCompletion(chat_pb2.DeleteStoredCompletionRequest(response_id=answer.id),
                                              metadata=metadata(key, tid3, "r3-" + tid), timeout=30)
        assert deleted.response_id == answer.id
        with pytest.raises(grpc.RpcError) as raised:  # gone from "b": its NOT_FOUND is the answer
            stub.GetStoredCompletion(chat_pb2.GetStoredCompletionRequest(response_id=answer.id),
                                     metadata=metadata(key, tid3, "r4-" + tid), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert [e["body"]["response_id"] for e in uh.seen(mocks["b"], tid3)] == [upstream_id, upstream_id]
    assert uh.seen(mocks["a"], tid3) == []
    assert hh.access_line(g, "r2-" + tid, timeout=20)["upstream"] == "b"
    assert hh.access_line(g, "r3-" + tid, timeout=20)["upstream"] == "b"


def test_metrics_count_grpc_attempts_per_upstream(pool, mocks):
    g, key = pool
    tid = new_test_id()
    mocks["a"].set_fault(tid, {"status": 429})
    assert complete(g, key, tid, False)[0] == "Mock answer to: hi"
    text = requests.get(g.url + "/metrics").text
    assert 'tornado_grok_upstream_failures_total{kind="status_429",upstream="a"}' in text
    assert 'tornado_grok_upstream_failovers_total{upstream="a"}' in text


def test_a_refused_grpc_port_goes_to_the_next_upstream(mocks, tmp_path):
    """"a" (weight 1000) names a gRPC port nobody listens on; "b" answers, with "a"'s failures as connect."""
    closed = uh.closed_port_url().split("//")[1].split("/")[0]
    g, key = uh.start_pool(str(tmp_path), [grpc_upstream("a", mocks["a"], closed, weight=1000),
                                           grpc_upstream("b", mocks["b"], weight=1)],
                           {"circuit_failures": 1000})
    try:
        for stream in (False, True):
            tid = new_test_id()
            assert complete(g, key, tid, stream)[0] == "Mock answer to: hi"
            assert statuses(mocks["b"], tid) == ["OK"]
        text = requests.get(g.url + "/metrics").text
        assert 'tornado_grok_upstream_failures_total{kind="connect",upstream="a"} 2.0' in text
    finally:
        g.stop()


def test_a_cooling_upstream_gets_no_grpc_call(mocks, tmp_path):
    """RESOURCE_EXHAUSTED puts "a" in cool-down (upstream_cooldown: the mock sends no retry-after):
    the next call goes to "b" without asking "a"; HTTP requests see the same cool-down; and when "b"
    cools down too, the client gets RESOURCE_EXHAUSTED with retry-after, as an HTTP client gets 429."""
    g, key = uh.start_pool(str(tmp_path), [grpc_upstream("a", mocks["a"], weight=1000),
                                           grpc_upstream("b", mocks["b"], weight=1)],
                           {"circuit_failures": 1000, "upstream_cooldown": 600})
    try:
        tid = new_test_id()
        mocks["a"].set_fault(tid, {"status": 429})
        assert complete(g, key, tid, True)[0] == "Mock answer to: hi"
        tid2 = new_test_id()
        assert complete(g, key, tid2, False)[0] == "Mock answer to: hi"
        assert uh.chat(g, key, tid2).status_code == 200
        assert uh.seen(mocks["a"], tid2) == []
        assert len(uh.seen(mocks["b"], tid2)) == 2
        health = requests.get(g.url + "/healthz").json()
        assert [u["state"] for u in health["upstreams"]] == ["cooling", "ok"]
        # "b" refuses too: with every upstream cooling, the client gets the pool's refusal.
        tid3 = new_test_id()
        mocks["b"].set_fault(tid3, {"status": 429})
        with pytest.raises(grpc.RpcError) as raised:
            complete(g, key, tid3, True)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert raised.value.details().startswith("every upstream is rate limited; retry after ")
        retry_after = dict(raised.value.trailing_metadata())["retry-after"]
        assert retry_after.isdigit() and 0 < int(retry_after) <= 600
        assert statuses(mocks["b"], tid3) == ["RESOURCE_EXHAUSTED"] and uh.seen(mocks["a"], tid3) == []
    finally:
        g.stop()


def test_an_upstream_without_grpc_takes_no_grpc_call(mocks, tmp_path):
    """"a" has no `grpc` field: every gRPC call goes to "b", though "a" weighs 1000."""
    g, key = uh.start_pool(str(tmp_path), [uh.upstream("a", mocks["a"], weight=1000),
                                           grpc_upstream("b", mocks["b"], weight=1)])
    try:
        tid = new_test_id()
        for stream in (False, True):
            text, request_id = complete(g, key, tid, stream)
            assert text == "Mock answer to: hi"
            line = hh.access_line(g, request_id, timeout=20)
            assert line["upstream"] == "b" and "failovers" not in line  # "a" was never tried
        assert uh.seen(mocks["a"], tid) == [] and statuses(mocks["b"], tid) == ["OK", "OK"]
        assert 'tornado_grok_upstream_requests_total{upstream="a"} 0.0' in requests.get(g.url + "/metrics").text
    finally:
        g.stop()


BAD_GRPC = [
    ({"grpc": "127.0.0.1"}, "upstream 'a': grpc must be host:port (api.x.ai:443)"),
    ({"grpc": "api.x.ai:99999"}, "upstream 'a': grpc must be host:port"),
    ({"grpc": "api.x.ai:４４３"}, "upstream 'a': grpc must be host:port"),  # fullwidth digits
    ({"grpc": 443}, "upstream 'a': grpc must be host:port"),
    ({"grpc": "api.x.ai:443", "grpc_tls": "no"}, "upstream 'a': grpc_tls must be true or false"),
]


@pytest.mark.parametrize("fields,message", BAD_GRPC, ids=[str(c[0]) for c in BAD_GRPC])
def test_a_bad_grpc_field_is_one_line_at_start(tmp_path, fields, message):
    from tests.test_upstreams_config import GOOD, run_with
    done = run_with(tmp_path, [dict(GOOD, **fields)])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run.py: configuration error: ") and message in lines[0]


def test_a_list_without_any_grpc_address_refuses_grpc_calls(mocks, tmp_path):
    g, key = uh.start_pool(str(tmp_path), [uh.upstream("a", mocks["a"]), uh.upstream("b", mocks["b"])])
    try:
        tid = new_test_id()
        with pytest.raises(grpc.RpcError) as raised:
            complete(g, key, tid, True)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no upstream of this gateway has a gRPC address" in raised.value.details()
        assert uh.seen(mocks["a"], tid) == [] and uh.seen(mocks["b"], tid) == []
        assert any("gRPC listening on" in line and "no [[upstreams]] entry names a grpc address" in line
                   for line in g.stdout_lines)
    finally:
        g.stop()
