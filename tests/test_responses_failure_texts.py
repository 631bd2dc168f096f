"""The Responses API's upstream failure texts reach the client without the operator key, and the
upstream's own `error` event keeps what xAI said.

An upstream written for the test (tests/responses_upstream.py) quotes the operator key (whole, as
`Bearer <key>`, a character short or changed, JSON-escaped: tests/security_helpers.key_variants) in
`response.error.message` of `response.failed` and in `incomplete_details` of
`response.incomplete`, and in its `error` event. Every way a client can get those texts is read as
raw bytes: streamed, resumable, resumed (GET /streams/{id}, GET /responses/{id}?stream=true from the
store), relayed by GET /responses/{id}?stream=true, a whole failed POST /responses, and GET
/responses/{id}. None may hold a 12-character piece of the key. A `.delta` event that is not JSON
ends the stream with upstream_bad_event, as any other malformed event.
"""

import json
import os
import secrets

import pytest
import requests

from tests import hardening_helpers as hh
from tests import security_helpers as sh
from tests import servers
from tests.wire import bind
from tests.redis_server import skip_unless_available
from tests.responses_upstream import ScriptedResponses, event
from tests.wire import client_view, events, post

UPSTREAM_KEY = "xai-" + secrets.token_urlsafe(36)
QUOTE = sh.quoting_text(UPSTREAM_KEY)
MODEL = "grok-test"


def with_escapes(data: bytes) -> bytes:
    # json.dumps doubles the backslashes of the escaped variant; the upstream sends \u0078... itself.
    return data.replace(b"\\\\u", b"\\u")


def response(status: str, **fields) -> dict:
    return dict({"id": "resp_x", "object": "response", "status": status, "model": MODEL, "output": [],
                 "error": None, "incomplete_details": None, "usage": None}, **fields)


USAGE = {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6, "output_tokens_details": {"reasoning_tokens": 0}}
FAILED = response("failed", error={"code": "server_error", "message": QUOTE}, usage=USAGE)
INCOMPLETE = response("incomplete", incomplete_details={"reason": "max_output_tokens", "detail": QUOTE}, usage=USAGE)
DELTA = {"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0,
         "delta": "Hi", "sequence_number": 1}


def stream_of(rid: str, terminal: str, final: dict) -> list:
    started = dict(response("in_progress"), id=rid)
    return [event("response.created", {"type": "response.created", "response": started, "sequence_number": 0}),
            event("response.output_text.delta", DELTA),
            with_escapes(event(terminal, {"type": terminal, "response": dict(final, id=rid), "sequence_number": 2}))]


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    up = ScriptedResponses()
    gateway, key = hh.start(str(tmp_path_factory.mktemp("failtexts")), up.url, upstream_key=UPSTREAM_KEY,
                            settings={"requests_per_minute": 0, "concurrent_requests": 0})
    try:
        yield up, gateway, key
    finally:
        gateway.stop()
        up.close()


def assert_no_key(data: bytes, where: str) -> None:
    text = data.decode("utf-8", "replace")
    for piece in sh.pieces(UPSTREAM_KEY):
        assert piece not in text, "a piece of the operator key (%r) is in %s:\n%s" % (piece, where, text[-2000:])
    assert "Incorrect API key provided: [redacted]" in json.dumps(json.loads(last_data(data)) if data.endswith(
        b"\n\n") else json.loads(data)), data[-600:]


def last_data(raw: bytes) -> bytes:
    return events(raw)[-1].split(b"\ndata: ", 1)[1]


def ask(relay, pieces, stream=True, **headers):
    up, gateway, key = relay
    sid = up.script(pieces) if stream else up.script(pieces, content_type="application/json")
    r = post(gateway.base + "/responses", {"model": MODEL, "input": sid, "stream": stream}, hh.auth(key, **headers))
    assert up.authorizations[-1] == "Bearer " + UPSTREAM_KEY  # the upstream had the key to quote
    return r


@pytest.mark.parametrize("terminal,final", [("response.failed", FAILED), ("response.incomplete", INCOMPLETE)])
def test_a_streamed_failure_holds_no_key(relay, terminal, final):
    r = ask(relay, stream_of("resp_plain_" + terminal[9:], terminal, final))
    assert r.status_code == 200
    assert r.content.startswith(b"event: response.created\n")
    assert events(r.content)[-1].startswith(b"event: %s\ndata: " % terminal.encode())
    assert_no_key(r.content, "the stream")
    # Only the quotes of the key changed: the rest of the event is as the upstream sent it.
    sent = json.loads(last_data(r.content))
    assert sent["response"]["usage"] == USAGE and sent["sequence_number"] == 2


@pytest.mark.parametrize("terminal,final", [("response.failed", FAILED), ("response.incomplete", INCOMPLETE)])
def test_a_resumable_failure_and_its_resumes_hold_no_key(relay, terminal, final):
    up, gateway, key = relay
    rid = "resp_resumable_" + terminal[9:]
    r = ask(relay, stream_of(rid, terminal, final), **{"X-Resumable": "true"})
    assert r.status_code == 200 and r.headers["X-Stream-Id"]
    assert_no_key(r.content, "the resumable stream")
    resumed = requests.get(gateway.url + r.headers["X-Resume-Url"], headers={"Last-Event-ID": "1"}, timeout=30)
    assert resumed.status_code == 200
    assert_no_key(resumed.content, "the resume")
    again = requests.get(gateway.base + "/responses/" + bind(gateway, key, "response", rid), params={"stream": "true", "starting_after": "0"},
                         headers=hh.auth(key), timeout=30)
    assert again.status_code == 200 and again.content.startswith(b"event: response.output_text.delta\n")
    assert_no_key(again.content, "GET /responses/{id}?stream=true from the store")


@pytest.mark.parametrize("terminal,final", [("response.failed", FAILED), ("response.incomplete", INCOMPLETE)])
def test_a_failure_retrieved_as_a_stream_from_the_upstream_holds_no_key(relay, terminal, final):
    up, gateway, key = relay
    sid = up.script(stream_of("resp_stream_get", terminal, final))
    r = requests.get(gateway.base + "/responses/" + bind(gateway, key, "response", sid), params={"stream": "true"},
                     headers=hh.auth(key), timeout=30)
    assert r.status_code == 200 and up.uris[-1] == "/v1/responses/%s?stream=true" % sid
    assert_no_key(r.content, "GET /responses/{id}?stream=true")


@pytest.mark.parametrize("final", [FAILED, INCOMPLETE])
def test_a_whole_failed_body_holds_no_key(relay, final):
    r = ask(relay, [with_escapes(json.dumps(final).encode())], stream=False)
    assert r.status_code == 200 and r.json()["status"] == final["status"]
    assert_no_key(r.content, "the whole POST /responses body")
    assert r.json()["usage"] == USAGE


@pytest.mark.parametrize("final", [FAILED, INCOMPLETE])
def test_get_of_a_failed_response_holds_no_key(relay, final):
    up, gateway, key = relay
    sid = up.script([with_escapes(json.dumps(final).encode())], content_type="application/json")
    r = requests.get(gateway.base + "/responses/" + bind(gateway, key, "response", sid), headers=hh.auth(key),
                     timeout=30)
    assert r.status_code == 200 and r.json()["status"] == final["status"]
    assert_no_key(r.content, "GET /responses/{id}")


def test_a_completed_response_is_relayed_as_sent(relay):
    """A successful answer is never rewritten, even when its text looks like a key."""
    done = response("completed", output=[{"type": "message", "content": [{"type": "output_text", "text": QUOTE}]}])
    body = json.dumps(done).encode()
    r = ask(relay, [body], stream=False)
    up, gateway, key = relay
    assert r.json() == dict(done, id=bind(gateway, key, "response", "resp_x"))  # only its id, bound to the key


def test_the_upstream_error_event_keeps_code_message_and_param(relay):
    error = {"type": "error", "code": "server_error", "message": "Overloaded; " + QUOTE, "param": "input",
             "sequence_number": 2}
    r = ask(relay, stream_of("resp_err", "response.failed", FAILED)[:2] + [with_escapes(event("error", error))])
    assert r.status_code == 200
    sent = json.loads(last_data(r.content))
    assert events(r.content)[-1].startswith(b"event: error\ndata: ")
    assert sent["message"].startswith("Overloaded; Incorrect API key provided: [redacted]")
    assert_no_key(r.content, "the error event")
    fields = {"code": "server_error", "message": sent["message"], "param": "input"}
    assert events(r.content)[-1] + b"\n\n" == b"event: error\ndata: " + json.dumps(
        dict({"type": "error"}, **fields, sequence_number=2, error=fields), separators=(",", ":")).encode() + b"\n\n"


def test_the_upstream_error_event_as_sent_without_a_key(relay):
    """Raw bytes: code, message and param exactly as the upstream sent them, the next sequence_number,
    and the `error` object the SDKs raise on."""
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "Too many tokens, slow down.",
             "param": None, "sequence_number": 41}
    r = ask(relay, stream_of("resp_err2", "response.failed", FAILED)[:2] + [event("error", error)])
    fields = b'{"code":"rate_limit_exceeded","message":"Too many tokens, slow down.","param":null}'
    assert events(r.content)[-1] + b"\n\n" == (
        b'event: error\ndata: {"type":"error","code":"rate_limit_exceeded","message":"Too many tokens, slow down.",'
        b'"param":null,"sequence_number":2,"error":' + fields + b"}\n\n")


@pytest.mark.parametrize("data", [b"{oops}", b'{"type":"response.output_text.delta","delta":"x",}',
                                  b'{"type":"response.output_text.delta","delta":}'])
def test_a_delta_that_is_not_json_ends_the_stream(relay, data):
    pieces = stream_of("resp_bad_delta", "response.failed", FAILED)[:2] + [
        b"event: response.output_text.delta\ndata: " + data + b"\n\n",
        event("response.output_text.delta", dict(DELTA, sequence_number=3))]
    r = ask(relay, pieces)
    assert r.status_code == 200
    good = client_view(b"".join(pieces[:2]), r.content)  # the response id as bound to the key
    message = "API error: the upstream sent an event that is not a JSON object"
    bad = {"type": "error", "code": "upstream_bad_event", "message": message, "param": None, "sequence_number": 2,
           "error": {"type": "upstream_error", "code": "upstream_bad_event", "message": message, "param": None}}
    assert r.content == good + b"event: error\ndata: " + json.dumps(bad, separators=(",", ":")).encode() + b"\n\n"


@skip_unless_available()
@pytest.mark.parametrize("terminal,final", [("response.failed", FAILED), ("response.incomplete", INCOMPLETE)])
def test_with_the_redis_store_a_failure_resumed_on_another_process_holds_no_key(redis_server, tmp_path,
                                                                                terminal, final):
    up = ScriptedResponses()
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    settings = {"stream_store": "redis", "redis_url": redis_server.url, "requests_per_minute": 0,
                "concurrent_requests": 0}
    a = servers.start_gateway(folder, up.url, settings, upstream_key=UPSTREAM_KEY)
    b = servers.start_gateway(folder, up.url, settings, upstream_key=UPSTREAM_KEY)
    try:
        rid = "resp_redis_" + terminal[9:]
        r = ask((up, a, key), stream_of(rid, terminal, final), **{"X-Resumable": "true"})
        assert r.status_code == 200
        assert_no_key(r.content, "the resumable stream on A")
        resumed = requests.get(b.url + r.headers["X-Resume-Url"], headers={"Last-Event-ID": "1"}, timeout=30)
        assert resumed.status_code == 200
        assert_no_key(resumed.content, "the resume on B")
        again = requests.get(b.base + "/responses/" + bind(b, key, "response", rid),
                             params={"stream": "true", "starting_after": "0"}, headers=hh.auth(key), timeout=30)
        assert again.status_code == 200 and again.content.startswith(b"event: response.output_text.delta\n")
        assert_no_key(again.content, "GET /responses/{id}?stream=true on B")
    finally:
        a.stop()
        b.stop()
        up.close()
