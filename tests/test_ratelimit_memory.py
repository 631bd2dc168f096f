"""The in-process limiter (tornado_grok/ratelimit.py) on a clock the test moves: exact decisions,
exact header values, exact Retry-After. The same limiter through a real gateway is in
test_ratelimit_gateway.py; the Redis limiter is checked against this one in test_ratelimit_lua.py."""

import asyncio
import dataclasses

import pytest

from tornado_grok.ratelimit import Bucket, Decision, Limits, MemoryLimiter, format_seconds


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def limiter(clock):
    return MemoryLimiter(clock)


def acquire(limiter, limits, key="k"):
    return run(limiter.acquire(key, limits))


@pytest.mark.parametrize("seconds, text", [
    (-1, "0s"), (0, "0s"), (0.0004, "1ms"), (0.25, "250ms"), (0.9994, "999ms"), (1, "1s"), (1.5, "1.5s"),
    (2.0004, "2s"), (2.125, "2.125s"), (59.5, "59.5s"), (60, "1m0s"), (123, "2m3s"), (3600, "60m0s"),
    (119.6, "2m0s"), (239999.9, "4000m0s"),
])
def test_format_seconds_is_openais_duration_style(seconds, text):
    assert format_seconds(seconds) == text


def test_a_burst_admits_exactly_the_limit_and_counts_down(limiter):
    limits = Limits(requests_per_minute=3)
    decisions = [acquire(limiter, limits) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining_requests for d in decisions] == [2, 1, 0, 0]
    refused = decisions[3]
    assert (refused.reason, refused.retry_after, refused.lease) == ("requests", 20, None)
    assert refused.headers() == {"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0",
                                 "x-ratelimit-reset-requests": "1m0s"}
    assert refused.message() == "rate limit reached for this key (3 requests per minute); retry in 20 s"
    assert decisions[0].headers()["x-ratelimit-reset-requests"] == "20s"  # one of three spent: 20 s to full


def test_the_bucket_refills_at_the_per_minute_rate_and_no_further(limiter, clock):
    limits = Limits(requests_per_minute=60)  # one a second
    for _ in range(60):
        assert acquire(limiter, limits).allowed
    assert acquire(limiter, limits).retry_after == 1
    clock.now += 0.5
    d = acquire(limiter, limits)
    assert (d.allowed, d.retry_after, d.headers()["x-ratelimit-reset-requests"]) == (False, 1, "59.5s")
    clock.now += 2.5  # three seconds since the bucket ran out: three requests, not four
    assert [acquire(limiter, limits).allowed for _ in range(4)] == [True, True, True, False]
    clock.now += 3600  # a long pause fills the bucket to its capacity, never past it
    assert sum(acquire(limiter, limits).allowed for _ in range(70)) == 60


def test_retry_after_is_the_whole_seconds_until_one_request_is_back(limiter, clock):
    limits = Limits(requests_per_minute=2)  # one back every 30 s
    acquire(limiter, limits), acquire(limiter, limits)
    clock.now += 10
    d = acquire(limiter, limits)
    assert (d.allowed, d.retry_after) == (False, 20)
    clock.now += 19.5
    assert acquire(limiter, limits).retry_after == 1
    clock.now += 0.5
    assert acquire(limiter, limits).allowed


def test_keys_have_their_own_buckets(limiter):
    limits = Limits(requests_per_minute=1)
    assert acquire(limiter, limits, "a").allowed
    assert not acquire(limiter, limits, "a").allowed
    assert acquire(limiter, limits, "b").allowed


def test_a_changed_limit_starts_a_full_bucket(limiter):
    assert acquire(limiter, Limits(requests_per_minute=1)).allowed
    assert not acquire(limiter, Limits(requests_per_minute=1)).allowed
    d = acquire(limiter, Limits(requests_per_minute=5))
    assert (d.allowed, d.remaining_requests) == (True, 4)


def test_concurrency_holds_a_lease_until_released(limiter):
    limits = Limits(concurrent_requests=2)
    a, b = acquire(limiter, limits), acquire(limiter, limits)
    c = acquire(limiter, limits)
    assert (a.allowed, b.allowed, c.allowed) == (True, True, False)
    assert (c.reason, c.retry_after, c.headers()) == ("concurrency", 1, {})
    assert c.message() == "too many concurrent requests for this key (limit 2); retry when one finishes"
    assert limiter.inflight() == 2
    run(limiter.release(a))
    assert a.lease is None and limiter.inflight() == 1
    run(limiter.release(a))  # a second release of the same decision gives nothing back twice
    assert limiter.inflight() == 1
    run(limiter.release(c))  # a refused request held nothing
    assert limiter.inflight() == 1
    assert acquire(limiter, limits).allowed
    assert not acquire(limiter, limits).allowed
    run(limiter.release(b))
    assert limiter.inflight() == 1


def test_a_refused_request_spends_nothing(limiter):
    limits = Limits(requests_per_minute=5, concurrent_requests=1)
    held = acquire(limiter, limits)
    for _ in range(10):
        assert acquire(limiter, limits).reason == "concurrency"
    limiter.release_now(held)
    d = acquire(limiter, limits)
    assert (d.allowed, d.remaining_requests) == (True, 3)


def test_the_request_limit_is_checked_before_the_concurrency_limit(limiter):
    limits = Limits(requests_per_minute=1, concurrent_requests=1)
    acquire(limiter, limits)
    assert acquire(limiter, limits).reason == "requests"


def test_tokens_are_charged_after_the_fact_and_an_overdraw_delays_the_next_request(limiter, clock):
    limits = Limits(tokens_per_minute=600)  # ten tokens a second
    d = acquire(limiter, limits)
    assert (d.allowed, d.remaining_tokens, d.headers()["x-ratelimit-reset-tokens"]) == (True, 600, "0s")
    assert d.headers()["x-ratelimit-limit-tokens"] == "600"
    limiter.release_now(d)
    run(limiter.add_tokens("k", limits, 650))  # the answer used more than was left
    d = acquire(limiter, limits)
    assert (d.allowed, d.reason, d.retry_after) == (False, "tokens", 6)  # -50 + 10/s reaches 1 after 5.1 s
    assert d.headers()["x-ratelimit-remaining-tokens"] == "0"
    assert d.message() == "token rate limit reached for this key (600 tokens per minute); retry in 6 s"
    clock.now += 5
    assert not acquire(limiter, limits).allowed  # level 0: not yet
    clock.now += 0.05
    d = acquire(limiter, limits)  # level 0.5: a request may start with any tokens left
    assert (d.allowed, d.remaining_tokens) == (True, 0)


def test_no_tokens_charged_without_a_token_limit_or_for_nothing(limiter):
    run(limiter.add_tokens("k", Limits(), 10_000))
    limits = Limits(tokens_per_minute=100)
    run(limiter.add_tokens("k", limits, 0))
    assert acquire(limiter, limits).remaining_tokens == 100
    run(limiter.add_tokens("k", limits, 50))
    run(limiter.add_tokens("k", limits, -5))  # a negative count gives nothing back
    run(limiter.add_tokens("k", limits, 1))
    assert acquire(limiter, limits).remaining_tokens == 49


def test_a_refused_request_still_reports_its_token_headers(limiter):
    limits = Limits(requests_per_minute=1, tokens_per_minute=100)
    acquire(limiter, limits)
    d = acquire(limiter, limits)
    assert not d.allowed
    assert d.headers() == {"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0",
                           "x-ratelimit-reset-requests": "1m0s", "x-ratelimit-limit-tokens": "100",
                           "x-ratelimit-remaining-tokens": "100", "x-ratelimit-reset-tokens": "0s"}


def test_an_unlimited_key_is_always_admitted_and_sends_no_headers(limiter):
    for _ in range(1000):
        d = acquire(limiter, Limits())
        assert d.allowed and d.headers() == {}
        limiter.release_now(d)
    assert limiter.inflight() == 0


def test_limits_cannot_be_changed_in_place():
    """One Limits object is every key's defaults: changing it through one key would change them all."""
    defaults = Limits(requests_per_minute=60)
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.requests_per_minute = 1


def test_limits_for_a_key_override_only_what_the_key_sets():
    defaults = Limits(requests_per_minute=60, concurrent_requests=4, tokens_per_minute=1000)
    assert Limits.for_key(defaults, None) is defaults
    assert Limits.for_key(defaults, {}) is defaults
    assert Limits.for_key(defaults, {"concurrent_requests": 1}) == Limits(60, 1, 1000)


def test_a_bucket_waits_at_least_one_second():
    b = Bucket(60, 0.0)
    assert b.wait_for(1) == 1 and b.reset_after() == 0.0
    b.level = -2.5
    assert b.wait_for(1) == 4
    b.refill(1.0)
    assert b.level == -1.5 and b.stamp == 1.0


def test_decision_message_names_the_request_limit_by_default():
    d = Decision(False, "k", Limits(requests_per_minute=7), retry_after=3)
    assert d.message() == "rate limit reached for this key (7 requests per minute); retry in 3 s"
