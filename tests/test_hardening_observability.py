"""Observability: Prometheus metrics at GET /metrics (no key), one JSON access-log line per request
with how it ended, and the X-Request-Id kept or made, returned on every response, sent upstream."""

import re
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import hardening_helpers as hh
from tests.servers import add_key
from tests.wire import chat_body, data_events, events, post

SETTINGS = {"keepalive_interval": 0.2, "idle_timeout": 1.0}
CHAT = "/api/v1/chat/completions"


@pytest.fixture(scope="module")
def obs(mock, tmp_path_factory):
    g, key = hh.start(str(tmp_path_factory.mktemp("obs")), mock.base, SETTINGS)
    keys_file = g.argv[g.argv.index("--keys-file") + 1]
    g.limited_key = add_key(keys_file, "limited", "--rpm", "1")
    yield g, key
    g.stop()


def scrape(gateway) -> dict:
    """{(sample name, sorted label items): value} of the gateway's /metrics."""
    r = requests.get(gateway.url + "/metrics", timeout=5)
    assert r.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def stream(gateway, key, scenario="story", **extra):
    headers = hh.auth(key, **{"X-Mock-Scenario": scenario})
    return post(gateway.base + "/chat/completions", chat_body(**extra), headers)


def test_metrics_need_no_key_and_speak_prometheus(obs):
    gateway, _ = obs
    r = requests.get(gateway.url + "/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for name in ("tornado_grok_requests_total", "tornado_grok_open_streams", "tornado_grok_upstream_active",
                 "tornado_grok_time_to_first_token_seconds", "tornado_grok_stream_duration_seconds",
                 "tornado_grok_relayed_bytes_total", "tornado_grok_keepalives_total"):
        assert "# TYPE %s" % name.replace("_total", "") in r.text


def test_a_completed_stream_in_metrics_and_log(obs):
    gateway, key = obs
    before = scrape(gateway)
    r = stream(gateway, key, stream_options={"include_usage": True})
    assert r.status_code == 200
    line = hh.access_line(gateway, r.headers["X-Request-Id"])
    after = scrape(gateway)
    n_events = len(data_events(r.content))
    assert line["request_id"] == r.headers["X-Request-Id"]
    assert line["key"] == "hardening" and line["model"] == "grok-4-1-fast-non-reasoning"
    assert line["status"] == 200 and line["ended"] == "completed" and line["stream"] is True
    assert line["chunks"] == n_events and line["bytes"] == len(r.content)
    assert line["usage"]["total_tokens"] > 0
    assert line["ttft_ms"] > 0 and line["duration_ms"] >= line["ttft_ms"]
    assert "error" not in line
    assert delta(before, after, "tornado_grok_requests_total", endpoint=CHAT, status="200") == 1
    assert delta(before, after, "tornado_grok_streams_total", ended="completed") == 1
    assert delta(before, after, "tornado_grok_relayed_bytes_total") == len(r.content)
    assert delta(before, after, "tornado_grok_relayed_events_total") == n_events
    assert delta(before, after, "tornado_grok_time_to_first_token_seconds_count") == 1
    assert delta(before, after, "tornado_grok_stream_duration_seconds_count") == 1


def test_a_whole_answer_in_the_log(obs):
    gateway, key = obs
    r = post(gateway.base + "/chat/completions", chat_body(stream=False), hh.auth(key))
    assert r.status_code == 200
    line = hh.access_line(gateway, r.headers["X-Request-Id"])
    assert line["ended"] == "completed" and line["usage"] == r.json()["usage"]
    assert line["model"] == "grok-4-1-fast-non-reasoning" and "stream" not in line


def test_keepalives_and_an_idle_timeout(obs):
    gateway, key = obs
    before = scrape(gateway)
    r = stream(gateway, key, "stall")
    comments = [b for b in events(r.content) if b == b": keep-alive"]
    assert comments and r.content.endswith(b'data: {"error":"API error: upstream idle timeout"}\n\n')
    line = hh.access_line(gateway, r.headers["X-Request-Id"])
    after = scrape(gateway)
    assert line["ended"] == "timeout" and line["code"] == "timeout_idle"
    assert line["keepalives"] == len(comments)
    assert delta(before, after, "tornado_grok_keepalives_total") == len(comments)
    assert delta(before, after, "tornado_grok_upstream_errors_total", kind="timeout_idle") == 1
    assert delta(before, after, "tornado_grok_streams_total", ended="timeout") == 1


@pytest.mark.parametrize("scenario,stream_flag,kind,status", [
    ("http_500", True, "upstream_500", 502),
    ("http_500", False, "upstream_500", 502),
    ("disconnect", True, "upstream_disconnected", 200),
    ("malformed", True, "upstream_bad_event", 200),
])
def test_upstream_errors_by_kind(obs, scenario, stream_flag, kind, status):
    gateway, key = obs
    before = scrape(gateway)
    r = post(gateway.base + "/chat/completions", chat_body(stream=stream_flag),
             hh.auth(key, **{"X-Mock-Scenario": scenario}))
    assert r.status_code == status
    line = hh.access_line(gateway, r.headers["X-Request-Id"])
    assert line["ended"] == "upstream_error" and line["code"] == kind and line["error"]
    after = scrape(gateway)
    assert delta(before, after, "tornado_grok_upstream_errors_total", kind=kind) == 1
    assert delta(before, after, "tornado_grok_requests_total", endpoint=CHAT, status=str(status)) == 1


def test_rate_limited_requests(obs):
    gateway, _ = obs
    before = scrape(gateway)
    codes = [post(gateway.base + "/chat/completions", chat_body(stream=False), hh.auth(gateway.limited_key))
             for _ in range(2)]
    assert [r.status_code for r in codes] == [200, 429]
    line = hh.access_line(gateway, codes[1].headers["X-Request-Id"])
    assert line["key"] == "limited" and line["ended"] == "rejected" and line["code"] == "rate_limit_exceeded"
    after = scrape(gateway)
    assert delta(before, after, "tornado_grok_rate_limited_total", reason="requests") == 1
    assert delta(before, after, "tornado_grok_requests_total", endpoint=CHAT, status="429") == 1


def test_open_streams_gauge_and_a_client_that_leaves(obs):
    gateway, key = obs
    request_id = "gone-" + uuid.uuid4().hex
    s = hh.open_stream(gateway, key, chat_body(), **{"X-Mock-Scenario": "stall", "X-Request-Id": request_id})
    hh.read_until(s, b'" a time,"')
    assert value(scrape(gateway), "tornado_grok_open_streams") == 1
    s.close()
    line = hh.access_line(gateway, request_id)
    assert line["ended"] == "client_gone" and line["chunks"] == 3
    hh.wait_idle(gateway)
    assert value(scrape(gateway), "tornado_grok_open_streams") == 0


def test_request_id_kept_returned_and_sent_upstream(obs, mock):
    gateway, key = obs
    rid = "client-req." + uuid.uuid4().hex
    test_id = "rid-" + uuid.uuid4().hex
    r = post(gateway.base + "/chat/completions", chat_body(),
             hh.auth(key, **{"X-Request-Id": rid, "X-Mock-Test-Id": test_id}))
    assert r.status_code == 200 and r.headers["X-Request-Id"] == rid
    assert mock.wait_ended(test_id=test_id)["headers"]["x-request-id"] == rid
    assert hh.access_line(gateway, rid)["status"] == 200
    answers = [
        post(gateway.base + "/chat/completions", chat_body(stream=False), hh.auth(key, **{"X-Request-Id": rid})),
        post(gateway.base + "/chat/completions", chat_body(), {"X-Request-Id": rid}),  # 401
        requests.get(gateway.base + "/nowhere", headers={"X-Request-Id": rid}, timeout=5),  # 404
        requests.delete(gateway.base + "/chat/completions", headers={"X-Request-Id": rid}, timeout=5),  # 405
        post(gateway.base + "/chat/completions", None, hh.auth(key, **{"X-Request-Id": rid}), raw_body=b"{"),  # 400
        requests.get(gateway.url + "/readyz", headers={"X-Request-Id": rid}, timeout=5),
        requests.get(gateway.url + "/metrics", headers={"X-Request-Id": rid}, timeout=5),
    ]
    assert [a.status_code for a in answers] == [200, 401, 404, 405, 400, 200, 200]
    assert all(a.headers["X-Request-Id"] == rid for a in answers)


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünï", "a,b", ""])
def test_an_unusable_request_id_is_replaced(obs, bad):
    gateway, key = obs
    headers = hh.auth(key, **{"X-Request-Id": bad.encode("utf-8")})
    r = post(gateway.base + "/chat/completions", chat_body(stream=False), headers)
    assert r.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])


def test_request_ids_are_unique_when_made(obs):
    gateway, _ = obs
    ids = {requests.get(gateway.url + "/healthz", timeout=5).headers["X-Request-Id"] for _ in range(20)}
    assert len(ids) == 20
