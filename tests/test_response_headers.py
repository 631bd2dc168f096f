"""The headers every /api/v1 answer starts with, which the gateway sets without tornado's per-value
checks (handlers/base.py): a stream, a whole answer and an error each carry them, and the Date,
made once a second, is the date of the second the answer was made."""

import email.utils
import time

import requests

from tests.wire import chat_body, post


def _date(response) -> float:
    return email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()


def _answers(gateway, headers) -> dict:
    url = gateway.base + "/chat/completions"
    return {
        "stream": post(url, chat_body(), dict(headers, **{"X-Mock-Scenario": "story"})),
        "whole": post(url, chat_body(stream=False), dict(headers, **{"X-Mock-Scenario": "story"})),
        "unauthorized": requests.post(url, json=chat_body(), timeout=30,
                                      headers=dict(headers, Authorization="Bearer nope-nope-nope")),
        "bad body": requests.post(url, data=b"{", headers=headers, timeout=30),
    }


def test_every_answer_has_the_gateways_headers(gateway, headers):
    for name, r in _answers(gateway, headers).items():
        assert r.headers["Server"].startswith("TornadoServer/"), name
        assert len(r.headers["X-Request-Id"]) == 32, name
        assert abs(_date(r) - time.time()) < 3, name
    answers = _answers(gateway, dict(headers, **{"X-Request-Id": "client-chosen.id:1"}))
    assert {r.headers["X-Request-Id"] for r in answers.values()} == {"client-chosen.id:1"}
    for name in ("stream", "whole", "bad body"):  # an authenticated request has its key's limits
        assert int(answers[name].headers["X-Ratelimit-Limit-Requests"]) > 0, name
    assert answers["stream"].headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert answers["stream"].headers["Cache-Control"] == "no-cache"
    assert answers["stream"].headers["X-Accel-Buffering"] == "no"


def test_the_date_follows_the_clock(gateway, headers):
    url = gateway.base + "/chat/completions"
    first = _date(post(url, chat_body(stream=False), headers))
    while time.time() < first + 2.5:  # the wall clock itself is what is waited for here
        time.sleep(0.05)
    second = post(url, chat_body(stream=False), headers)
    assert _date(second) >= first + 2
    assert abs(_date(second) - time.time()) < 2
