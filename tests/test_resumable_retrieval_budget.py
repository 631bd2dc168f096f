"""Resumes and retrievals served from the stream store: they take
nothing from the key's request rate or concurrency limit, only from a bucket of their own,
resume_requests_per_minute; past it, 429 with Retry-After. Both limiter backends."""

import uuid

import pytest
import requests

from tests import hardening_helpers as hh
from tests import resumable_helpers as rh
from tests.redis_server import available
from tests.servers import wait_until
from tests.wire import SEED_MODEL, SEED_PROMPT, bind

BODY = {"model": SEED_MODEL, "input": SEED_PROMPT, "stream": True}
RESPONSE_ID = "resp_mock_story"  # the upstream's id of the mock's responses_story


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.skipif(
    not available(), reason="redis-server is not installed"))])
def limiter(request):
    if request.param == "memory":
        return {"ratelimit_backend": "memory"}
    return {"ratelimit_backend": "redis", "redis_url": request.getfixturevalue("redis_url")}


def retrieve(g, key, test_id: str) -> requests.Response:
    """GET /responses/{id}?stream=true of a stream that still runs: a 200's head only (its body
    follows the live stream), an error whole."""
    r = requests.get(g.base + "/responses/%s?stream=true&starting_after=1" % bind(g, key, "response", RESPONSE_ID),
                     stream=True,
                     headers=hh.auth(key, **{"X-Mock-Test-Id": test_id}), timeout=30)
    if r.status_code != 200:
        r.content
    r.close()
    return r


def test_retrievals_take_from_their_own_budget_not_the_request_limits(make_gateway, mock, limiter):
    g, key = make_gateway(dict(limiter, requests_per_minute=2, concurrent_requests=1,
                               resume_requests_per_minute=3))
    test_id = uuid.uuid4().hex
    # A slow resumable stream: it holds the key's one concurrency slot while its upstream runs.
    partial = rh.Partial(g, key, path="/api/v1/responses", body=BODY, test_id=test_id, speed="20")
    partial.read_events(2)
    url = partial.header("X-Resume-Url")
    partial.cut(True)
    for _ in range(3):  # served from the store while the slot is taken and one request is left
        r = retrieve(g, key, test_id)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    r = retrieve(g, key, test_id)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert "resume and retrieval limit" in r.json()["error"]["message"]
    # GET /streams/{id} draws on the same bucket, with the key or with the stream's token.
    stream_url = url.split("?")[0]
    assert requests.get(g.url + stream_url, headers=hh.auth(key), timeout=5).status_code == 429
    assert requests.get(g.url + url, timeout=5).status_code == 429
    assert mock.journal(test_id=test_id) and not [
        e for e in mock.journal(test_id=test_id) if e.get("method") == "GET"]
    # The request limit is untouched: once the stream is cancelled (its slot freed), the key's second
    # request of the minute is admitted, and its third is not.
    assert requests.delete(g.url + url, timeout=5).json()["cancelled"] is True
    models = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(
        requests.get(g.base + "/models", headers=hh.auth(key), timeout=5)), timeout=10)
    assert models.headers["x-ratelimit-remaining-requests"] == "0"
    refused = requests.get(g.base + "/models", headers=hh.auth(key), timeout=5)
    assert refused.status_code == 429 and "requests per minute" in refused.json()["error"]["message"]


def test_by_default_a_key_gets_ten_times_its_request_rate(make_gateway, mock):
    g, key = make_gateway({"requests_per_minute": 1, "concurrent_requests": 0})
    test_id = uuid.uuid4().hex
    head, _ = rh.whole_stream(g, key, path="/api/v1/responses", body=BODY, test_id=test_id, speed="0")
    url = g.base + "/responses/%s?stream=true&starting_after=999999999999" % bind(g, key, "response", RESPONSE_ID)
    answers = [requests.get(url, headers=hh.auth(key), timeout=10) for _ in range(11)]
    assert [(r.status_code, r.content) for r in answers[:10]] == [(200, b"")] * 10  # past its last event
    assert answers[10].status_code == 429 and "(10 per minute)" in answers[10].json()["error"]["message"]
