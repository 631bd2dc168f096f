"""One limit across processes: gateway processes sharing a real redis-server (tests/redis_server.py).

Run with `-s` to see the measured figures (docs/ratelimits.md quotes them).
"""

import concurrent.futures
import os
import signal
import time

import pytest
import requests

from tests import servers
from tests.redis_server import RedisServer, skip_unless_available
from tests.test_ratelimit_gateway import ADMIN_KEY, BODY, auth, limit_headers, open_stalled

pytestmark = skip_unless_available()


@pytest.fixture
def fleet(tmp_path, mock):
    """fleet(n, redis_url, flags=..., settings=..., args=...) -> (gateways, key): n processes with one
    config and one keys file, like n machines behind a load balancer."""
    started = []

    def make(n, redis_url, flags=(), settings=None, args=()):
        folder = str(tmp_path / ("fleet%d" % len(started)))
        key = servers.add_key(os.path.join(folder, "keys.json"), "k", *flags)
        # redis_timeout: these tests count admissions exactly, with up to four gateways, the mock,
        # Redis and the load on two shared cores, where Redis can wait longer than the default 50 ms
        # for a CPU; a call that times out is decided by the failure mode (tests/test_ops_redis_hang.py).
        settings = dict({"ratelimit_backend": "redis", "redis_url": redis_url, "admin_key": ADMIN_KEY,
                         "redis_timeout": 1.0}, **(settings or {}))
        gateways = [servers.start_gateway(folder, mock.base, settings, args=args) for _ in range(n)]
        started.extend(gateways)
        return gateways, key

    yield make
    for g in started:
        g.stop_gracefully()


def burst(urls: list[str], key: str, n: int, threads: int = 32) -> list[int]:
    """n requests at once, spread round-robin over urls; their status codes."""
    def one(i):
        return requests.post(urls[i % len(urls)] + "/chat/completions", json=BODY, headers=auth(key),
                             timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(n)))


def test_burst_over_two_processes_admits_exactly_the_limit(fleet, redis_url, mock, tmp_path):
    limit, sent = 30, 120  # refill is 0.5 per second: a burst well under 2 s gets no extra request
    gateways, key = fleet(2, redis_url, flags=("--rpm", str(limit)))
    started = time.monotonic()
    codes = burst([g.base for g in gateways], key, sent)
    took = time.monotonic() - started
    assert codes.count(200) == limit and codes.count(429) == sent - limit, codes
    print("\nredis backend, 2 processes: %d of %d admitted (limit %d/min), burst took %.2f s"
          % (codes.count(200), sent, limit, took))
    for g in gateways:  # either process now refuses, and says why in the same numbers
        r = requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key))
        assert r.status_code == 429 and r.headers["Retry-After"] in ("1", "2")  # one back every 2 s
        h = limit_headers(r)
        assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("30", "0")
    # The same burst on two processes with the memory backend: each enforces its own limit.
    folder = str(tmp_path / "memory")
    mkey = servers.add_key(os.path.join(folder, "keys.json"), "k", "--rpm", str(limit))
    memory = [servers.start_gateway(folder, mock.base) for _ in range(2)]
    try:
        mcodes = burst([g.base for g in memory], mkey, sent)
    finally:
        for g in memory:
            g.stop()
    assert mcodes.count(200) == 2 * limit
    print("memory backend, 2 processes: %d of %d admitted (limit %d/min)" % (mcodes.count(200), sent, limit))


def test_sustained_overload_over_four_processes_admits_the_refill_rate(fleet, redis_url):
    """Four processes hammered for a few seconds: admitted = the full bucket + what refilled meanwhile."""
    limit, seconds = 120, 2.5  # 2 requests per second come back
    gateways, key = fleet(4, redis_url, flags=("--rpm", str(limit)))
    urls = [g.base for g in gateways]
    stamps = []

    def worker(i):
        session = requests.Session()
        n = 0
        while time.monotonic() < end:
            code = session.post(urls[(i + n) % 4] + "/chat/completions", json=BODY, headers=auth(key)).status_code
            if code == 200:
                stamps.append(time.monotonic())
            n += 1
        return n

    start = time.monotonic()
    end = start + seconds
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sent = sum(pool.map(worker, range(8)))
    span = max(stamps) - min(stamps)  # from the first admission to the last
    expected = limit + limit * span / 60.0
    print("\nredis backend, 4 processes, %.1f s of overload: %d of %d admitted; a single bucket allows %.1f"
          % (span, len(stamps), sent, expected))
    assert expected - 1.5 <= len(stamps) <= expected + 0.5


def test_workers_share_one_limit_through_redis(fleet, redis_url):
    limit = 20
    (g,), key = fleet(1, redis_url, flags=("--rpm", str(limit)), args=("--workers", "3"))
    servers.wait_until(lambda: g.stdout.count("tornado_grok listening on") == 3, timeout=20)
    assert "PER PROCESS" not in g.stdout
    codes = burst([g.base], key, 80)
    assert codes.count(200) == limit


def test_concurrency_cap_holds_across_processes(fleet, redis_url):
    (a, b), key = fleet(2, redis_url, flags=("--concurrency", "3"))
    held = [open_stalled(a, key), open_stalled(a, key), open_stalled(b, key)]
    assert [h.status_code for h in held] == [200, 200, 200]
    for g in (a, b):
        refused = requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key))
        assert refused.status_code == 429 and "concurrent" in refused.json()["error"]["message"]
    held[0].close()  # a slot taken on A comes back, and B can use it
    servers.wait_until(lambda: requests.post(b.base + "/chat/completions", json=BODY,
                                             headers=auth(key)).status_code == 200, timeout=10)
    for h in held[1:]:
        h.close()


def test_long_stream_keeps_its_slot_by_renewing_the_lease(fleet, redis_url):
    lease = 1.0
    (a, b), key = fleet(2, redis_url, flags=("--concurrency", "1"), settings={"lease_seconds": lease})
    held = open_stalled(a, key)
    assert held.status_code == 200
    # Three lease periods later the stream still holds the slot (renewed every lease / 3).
    deadline = time.monotonic() + 3 * lease
    while time.monotonic() < deadline:
        assert requests.post(b.base + "/chat/completions", json=BODY, headers=auth(key)).status_code == 429
    held.close()


def test_slots_of_a_killed_process_come_back_within_the_lease(fleet, redis_url):
    lease = 2.0
    (a, b), key = fleet(2, redis_url, flags=("--concurrency", "2"), settings={"lease_seconds": lease})
    held = [open_stalled(a, key), open_stalled(a, key)]
    assert [h.status_code for h in held] == [200, 200]
    a.signal(signal.SIGKILL)  # no release, no drain: only the leases' expiry frees the slots
    killed = time.monotonic()
    a.wait(10)
    assert requests.post(b.base + "/chat/completions", json=BODY, headers=auth(key)).status_code == 429

    def both_free():
        codes = burst([b.base], key, 2, threads=2)  # non-streaming: each frees its slot at once
        return codes == [200, 200] or None

    servers.wait_until(both_free, timeout=lease + 2)
    print("\nslots of a SIGKILLed process free again after %.2f s (lease_seconds = %s)"
          % (time.monotonic() - killed, lease))
    for h in held:
        h.close()


def test_graceful_stop_gives_slots_back_at_once(fleet, redis_url):
    """SIGTERM: the drained stream's slot is released, not left to expire (the lease is long here)."""
    (a, b), key = fleet(2, redis_url, flags=("--concurrency", "1"),
                        settings={"lease_seconds": 600, "drain_seconds": 0.2})
    held = open_stalled(a, key)
    assert requests.post(b.base + "/chat/completions", json=BODY, headers=auth(key)).status_code == 429
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0
    assert requests.post(b.base + "/chat/completions", json=BODY, headers=auth(key)).status_code == 200
    assert "REDIS UNREACHABLE" not in a.stderr  # closing the connection is not an outage
    held.close()


def test_usage_is_shared_across_processes(fleet, redis_url):
    (a, b), key = fleet(2, redis_url)
    for g in (a, b, b):
        assert requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key)).status_code == 200
    open_stalled(a, key).close()

    def totals():
        doc = requests.get(b.url + "/admin/usage", headers=auth(ADMIN_KEY)).json()
        t = doc["keys"].get("k", {})
        return doc if t.get("abandoned_streams") == 1 else None

    doc = servers.wait_until(totals, timeout=10)
    assert doc["scope"] == "shared" and doc["backend"] == "redis"
    t = doc["keys"]["k"]
    # three answers of 1 + 4 tokens; the abandoned stream ended before any usage was seen: estimated
    assert (t["requests"], t["streams"], t["errors"], t["estimated_requests"]) == (4, 1, 0, 1)
    assert t["prompt_tokens"] + t["completion_tokens"] - t["estimated_tokens"] == 3 + 12


@pytest.fixture
def own_redis():
    server = RedisServer.start()
    yield server
    server.stop()


def outage_lines(g) -> int:
    return g.stderr.count("REDIS UNREACHABLE")


def test_fail_open_admits_while_redis_is_down_and_recovers(fleet, own_redis):
    (g,), key = fleet(1, own_redis.url, flags=("--rpm", "2"), settings={"redis_failure_mode": "fail_open"})
    codes = [requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key)).status_code
             for _ in range(3)]
    assert codes == [200, 200, 429]
    own_redis.stop()
    down = [requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key)) for _ in range(4)]
    # admitted under this process's own limits (2 per minute, unused so far), best-effort headers
    assert [r.status_code for r in down] == [200, 200, 429, 429]
    assert limit_headers(down[0])["x-ratelimit-remaining-requests"] == "1"
    servers.wait_until(lambda: outage_lines(g) == 1)
    assert "fail_open" in g.stderr
    own_redis.restart()  # empty: the shared bucket starts full again
    servers.wait_until(lambda: "reachable again" in g.stderr, timeout=10)
    back = requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key))
    assert back.status_code == 200 and limit_headers(back)["x-ratelimit-remaining-requests"] == "1"
    assert outage_lines(g) == 1  # logged once for the whole outage, not per request


def test_fail_closed_answers_503_while_redis_is_down_and_recovers(fleet, own_redis):
    (g,), key = fleet(1, own_redis.url, settings={"redis_failure_mode": "fail_closed"})
    assert requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key)).status_code == 200
    own_redis.stop()
    for _ in range(3):
        r = requests.post(g.base + "/chat/completions", json=BODY, headers=auth(key))
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "ratelimit_unavailable"
    streamed = requests.post(g.base + "/chat/completions", json=dict(BODY, stream=True), headers=auth(key))
    assert streamed.status_code == 503
    assert streamed.content == (b'data: {"error":"API error: the rate limiter\'s store is unreachable; '
                                b'retry shortly"}\n\n')
    servers.wait_until(lambda: outage_lines(g) == 1)
    assert "fail_closed" in g.stderr
    own_redis.restart()
    servers.wait_until(lambda: requests.post(g.base + "/chat/completions", json=BODY,
                                             headers=auth(key)).status_code == 200, timeout=10)
    assert outage_lines(g) == 1
