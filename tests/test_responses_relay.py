"""The Responses API through the gateway, on the wire: each mock Responses scenario compared byte for
byte with the mock directly, the error events that end a broken stream, keep-alives, disconnects,
accounting and token limits, GET/DELETE /responses/{id} and the id check.
"""

import json
import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests.servers import wait_until
from tests.wire import CLIENT_MODEL, SEED_MODEL, UPSTREAM_MODEL, bound_ids, client_view, direct, events, post
TERMINALS = (b"event: response.completed\n", b"event: response.incomplete\n", b"event: response.failed\n")


def body(text="Write a short story about a space adventure", model=SEED_MODEL, stream=True, **extra):
    return dict({"model": model, "input": text, "stream": stream}, **extra)


def through(gateway, headers, scenario=None, **extra):
    h = dict(headers, **({"X-Mock-Scenario": scenario} if scenario else {}))
    return post(gateway.base + "/responses", body(**extra), h)


def upstream_bytes(mock, scenario, **extra):
    r = direct(mock, body(model="grok-4.20-non-reasoning", **extra), {"X-Mock-Scenario": scenario}, path="/responses")
    assert r.status_code == 200
    return r.content


def error_event(code, message, sequence, kind="upstream_error") -> bytes:
    text = "API error: " + message
    obj = {"type": "error", "code": code, "message": text, "param": None, "sequence_number": sequence,
           "error": {"type": kind, "code": code, "message": text, "param": None}}
    return b"event: error\ndata: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


@pytest.mark.parametrize("scenario", ["story", "reasoning", "function_call", "web_search", "incomplete", "failed"])
def test_relayed_byte_for_byte(gateway, mock, headers, scenario):
    r = through(gateway, headers, scenario)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    expected = upstream_bytes(mock, scenario)
    assert UPSTREAM_MODEL in expected  # the nested response.model is put back too
    # The response id is bound to the key (ownership.py); nothing else differs from the upstream's bytes.
    assert list(bound_ids(r.content)) == [b"resp_mock_" + scenario.encode()]
    assert r.content == client_view(expected, r.content).replace(UPSTREAM_MODEL, CLIENT_MODEL)
    last = events(r.content)[-1] + b"\n"
    assert last.startswith(TERMINALS) and b"[DONE]" not in r.content
    assert b'"usage":{"input_tokens"' in last


def test_each_event_keeps_its_event_line_and_sequence_number(gateway, headers):
    r = through(gateway, headers, "story")
    blocks = events(r.content)
    assert all(b.startswith(b"event: response.") and b"\ndata: {" in b for b in blocks)
    numbers = [json.loads(b.split(b"\ndata: ", 1)[1])["sequence_number"] for b in blocks]
    assert numbers == list(range(len(blocks)))


def test_the_default_answer_streams(gateway, headers):
    r = through(gateway, headers, text="hello there gateway")
    text = "".join(json.loads(b.split(b"\ndata: ", 1)[1])["delta"] for b in events(r.content)
                   if b.startswith(b"event: response.output_text.delta\n"))
    assert text == "Mock answer to: hello there gateway"


def _cut_before(blocks, marker, client=b""):
    index = next(i for i, b in enumerate(blocks) if marker(b))
    return b"".join(client_view(b, client).replace(UPSTREAM_MODEL, CLIENT_MODEL) + b"\n\n" for b in blocks[:index])


def upstream_error_event(code, message, param, sequence) -> bytes:
    """The upstream's own error event as relayed: its code, message and param as sent, the next
    sequence_number, and the `error` object the SDKs raise on."""
    fields = {"code": code, "message": message, "param": param}
    obj = dict({"type": "error"}, **fields, sequence_number=sequence, error=fields)
    return b"event: error\ndata: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def test_upstream_error_event_keeps_its_code_message_and_param(gateway, mock, headers):
    blocks = events(upstream_bytes(mock, "error_mid_stream"))
    assert blocks[-1].startswith(b"event: error\n")
    r = through(gateway, headers, "error_mid_stream")
    assert r.status_code == 200
    assert r.content == _cut_before(blocks, lambda b: b.startswith(b"event: error"), r.content) + upstream_error_event(
        "server_error", "The service encountered an unexpected error while generating the response.", None, 7)


def test_missing_terminal_event_ends_with_an_error_event(gateway, mock, headers):
    upstream = upstream_bytes(mock, "no_terminal")
    assert not any(t in upstream for t in TERMINALS)
    r = through(gateway, headers, "no_terminal")
    assert r.content == client_view(upstream, r.content).replace(UPSTREAM_MODEL, CLIENT_MODEL) + error_event(
        "upstream_incomplete", "the upstream ended the stream without a terminal event "
        "(response.completed, response.incomplete or response.failed)", 11)


def test_malformed_event_ends_with_an_error_event(gateway, mock, headers):
    blocks = events(upstream_bytes(mock, "malformed"))
    r = through(gateway, headers, "malformed")
    good = _cut_before(blocks, lambda b: b'" a ti' in b, r.content)
    assert r.content == good + error_event("upstream_bad_event", "the upstream sent an event that is not a JSON object", 6)


def test_fault_error_after_n_events(gateway, mock, headers):
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"error_after": 5, "error": "boom"}, times=1)
    r = through(gateway, dict(headers, **{"X-Mock-Test-Id": test_id}), "story")
    blocks = events(r.content)
    assert len(blocks) == 6 and blocks[-1] + b"\n\n" == upstream_error_event("server_error", "boom", None, 5)


def test_an_error_before_the_stream_has_its_status_and_a_json_body(gateway, headers):
    r = through(gateway, headers, "http_429")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]["message"].startswith("API error: ")
    unauthorized = post(gateway.base + "/responses", body(), dict(headers, Authorization="Bearer nope"))
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["type"] == "authentication_error"


def test_bad_bodies_are_400_naming_the_field(gateway, headers):
    for bad, field in (({"input": "x"}, "model"), ({"model": "m"}, "input"), ({"model": "m", "input": []}, "input"),
                       ({"model": "m", "input": "x", "stream": "yes"}, "stream")):
        r = post(gateway.base + "/responses", bad, headers)
        assert r.status_code == 400 and field in r.json()["error"]["message"], r.content


def test_whole_response_has_the_client_model_and_is_accounted(make_gateway, mock):
    g, key = make_gateway(settings={"admin_key": "admin-" + "x" * 24})
    h = hh.auth(key, **{"X-Mock-Scenario": "story"})
    r = post(g.base + "/responses", body(stream=False), h)
    assert r.status_code == 200
    expected = direct(mock, body(model="grok-4.20-non-reasoning", stream=False), {"X-Mock-Scenario": "story"},
                      path="/responses").json()
    assert r.json()["id"].startswith("resp_mock_story.") and bound_ids(r.content) == {b"resp_mock_story": r.json()["id"].encode()}
    assert r.json() == dict(expected, model=SEED_MODEL, id=r.json()["id"])
    line = hh.access_line(g, r.headers["X-Request-Id"])
    assert line["usage"] == expected["usage"] and line["ended"] == "completed"


def test_stream_usage_is_accounted_from_the_terminal_event(make_gateway):
    admin = "admin-" + "y" * 24
    g, key = make_gateway(settings={"admin_key": admin})
    r = post(g.base + "/responses", body(), hh.auth(key, **{"X-Mock-Scenario": "reasoning"}))
    usage = json.loads(events(r.content)[-1].split(b"\ndata: ", 1)[1])["response"]["usage"]
    line = hh.access_line(g, r.headers["X-Request-Id"])
    assert line["usage"] == usage and line["ended"] == "completed" and line["stream"] is True
    totals = requests.get(g.url + "/admin/usage", headers=hh.auth(admin)).json()["keys"]["k"]
    assert totals["requests"] == 1 and totals["streams"] == 1
    assert (totals["prompt_tokens"], totals["completion_tokens"], totals["reasoning_tokens"]) == (12, 30, 18)


def test_token_limit_counts_responses_usage(make_gateway):
    g, key = make_gateway(key_flags=("--tpm", "40"))
    first = post(g.base + "/responses", body(), hh.auth(key, **{"X-Mock-Scenario": "story"}))
    assert first.status_code == 200  # 34 tokens (response.completed's usage.total_tokens)
    second = post(g.base + "/responses", body(), hh.auth(key, **{"X-Mock-Scenario": "story"}))
    assert second.status_code == 200 and second.headers["x-ratelimit-remaining-tokens"] == "6"
    refused = post(g.base + "/responses", body(), hh.auth(key))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_keepalives_while_the_upstream_is_silent(make_gateway, mock):
    g, key = make_gateway(settings={"keepalive_interval": 0.1, "idle_timeout": 0.6})
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"stall_after": 4}, times=1)
    r = post(g.base + "/responses", body(), hh.auth(key, **{"X-Mock-Scenario": "story", "X-Mock-Test-Id": test_id}))
    blocks = events(r.content)
    assert [b[:24] for b in blocks[:4]] == [b"event: response.created\n", b"event: response.in_progr",
                                             b"event: response.output_i", b"event: response.content_"]
    assert blocks[4:-1] and all(b == b": keep-alive" for b in blocks[4:-1])
    assert blocks[-1] + b"\n\n" == error_event("timeout_idle", "upstream idle timeout", 4, kind="timeout_error")


def test_a_first_event_timeout_after_keepalives_is_error_event_number_0(make_gateway, mock):
    """Keep-alives already sent the 200: the timeout is an in-band error event, numbered first."""
    g, key = make_gateway(settings={"keepalive_interval": 0.1, "first_event_timeout": 0.5})
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"slow_headers_ms": 5000}, times=1)
    r = post(g.base + "/responses", body(), hh.auth(key, **{"X-Mock-Scenario": "story", "X-Mock-Test-Id": test_id}))
    assert r.status_code == 200
    blocks = events(r.content)
    assert blocks[:-1] and all(b == b": keep-alive" for b in blocks[:-1])
    assert blocks[-1] + b"\n\n" == error_event("timeout_first_event", "upstream first event timeout", 0,
                                                 kind="timeout_error")


def test_client_disconnect_cancels_the_upstream(gateway, mock, key):
    test_id = uuid.uuid4().hex
    mock.set_fault(test_id, {"stall_after": 6}, times=1)
    s = hh.connect(gateway)
    payload = json.dumps(body()).encode()
    s.sendall(hh.raw_request("POST", "/api/v1/responses", hh.auth(
        key, **{"X-Mock-Scenario": "story", "X-Mock-Test-Id": test_id}), payload))
    got = hh.read_until(s, b'"delta":" upon"')
    assert got.startswith(b"HTTP/1.1 200 OK")
    s.close()
    entry = mock.wait_ended(timeout=3, test_id=test_id)
    assert entry["ended"] == "client_closed" and entry["path"] == "/v1/responses"
    wait_until(lambda: requests.get(gateway.url + "/readyz", timeout=5).json()["open_streams"] == 0, timeout=3)


def test_retrieve_stream_resume_and_delete(gateway, mock, headers):
    created = through(gateway, headers, "story")
    blocks = events(created.content)
    rid = json.loads(blocks[0].split(b"\ndata: ", 1)[1])["response"]["id"]
    got = requests.get(gateway.base + "/responses/" + rid, headers=headers)
    assert got.status_code == 200 and got.json()["id"] == rid and got.json()["status"] == "completed"
    resumed = requests.get(gateway.base + "/responses/%s?stream=true&starting_after=24" % rid, headers=headers)
    assert resumed.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    upstream_id = rid.rsplit(".", 1)[0]
    direct_resume = requests.get(mock.base + "/responses/%s?stream=true&starting_after=24" % upstream_id,
                                 headers={"Authorization": "Bearer direct"})
    assert resumed.content == direct_resume.content.replace(b'"%s"' % upstream_id.encode(), b'"%s"' % rid.encode())
    assert upstream_id.encode() not in resumed.content.replace(rid.encode(), b"")
    assert [json.loads(b.split(b"\ndata: ", 1)[1])["sequence_number"] for b in events(resumed.content)] == [25, 26, 27]
    deleted = requests.delete(gateway.base + "/responses/" + rid, headers=headers)
    assert deleted.status_code == 200 and deleted.json() == {"id": rid, "object": "response", "deleted": True}
    gone = requests.get(gateway.base + "/responses/" + rid, headers=headers)
    assert gone.status_code == 404 and "not found" in gone.json()["error"]["message"]


@pytest.mark.parametrize("bad_id", ["%2e%2e", "a..b", ".hidden", "x%2F..%2Fchat%2Fcompletions", "a%20b", "a%3Fb",
                                    "x" * 129])
def test_ids_are_checked_before_they_reach_an_upstream_path(gateway, mock, headers, bad_id):
    test_id = uuid.uuid4().hex
    h = dict(headers, **{"X-Mock-Test-Id": test_id})
    for method in ("GET", "DELETE"):
        r = requests.request(method, gateway.base + "/responses/" + bad_id, headers=h)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_id"
    assert mock.journal(test_id) == []


def test_query_parameters_are_checked(gateway, headers):
    for query in ("stream=yes", "starting_after=-1", "starting_after=x", "include=a/b"):
        r = requests.get(gateway.base + "/responses/resp_x?" + query, headers=headers)
        assert r.status_code == 400, query


def test_metrics_name_the_responses_endpoints(gateway, headers):
    post(gateway.base + "/responses", body(stream=False), headers)
    requests.get(gateway.base + "/responses/resp_nobody_here", headers=headers)
    text = requests.get(gateway.url + "/metrics").text
    assert 'endpoint="/api/v1/responses",status="200"' in text
    assert 'endpoint="/api/v1/responses/{id}",status="404"' in text


def test_a_delete_leaves_the_next_get_a_get(gateway, headers):
    first, second = (post(gateway.base + "/responses", body(stream=False, text=t), headers).json()["id"]
                     for t in ("one", "two"))
    assert requests.delete(gateway.base + "/responses/" + first, headers=headers).status_code == 200
    kept = requests.get(gateway.base + "/responses/" + second, headers=headers)
    assert kept.status_code == 200 and kept.json()["id"] == second
    assert requests.get(gateway.base + "/responses/" + second, headers=headers).status_code == 200  # not deleted


def test_failed_and_incomplete_responses_in_the_access_log(gateway, headers):
    failed = through(gateway, headers, "failed")
    incomplete = through(gateway, headers, "incomplete")
    assert hh.access_line(gateway, failed.headers["X-Request-Id"])["ended"] == "upstream_error"
    assert hh.access_line(gateway, incomplete.headers["X-Request-Id"])["ended"] == "completed"
