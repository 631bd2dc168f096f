"""/metrics with `--workers 2`: whichever worker answers a scrape, the counters are the sum of every
worker's (prometheus_client's multiprocess mode), and a worker that dies does not take its counts
with it. A real gateway supervisor with two forked workers, in front of the mock upstream."""

import os
import re
import signal

import pytest
import requests

from tests import servers


def fresh_get(url, headers=None):
    """A GET on a new connection, so the kernel may hand it to either worker."""
    with requests.Session() as s:
        return s.get(url, timeout=10, headers=dict(headers or {}, Connection="close"))


def counter(text: str, endpoint: str, status: str = "200") -> float:
    m = re.search(r'^tornado_grok_requests_total\{endpoint="%s",status="%s"\} (\S+)$'
                  % (re.escape(endpoint), status), text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def workers(tmp_path, mock):
    folder = str(tmp_path)
    key = servers.add_key(os.path.join(folder, "keys.json"), "k")
    g = servers.start_gateway(folder, mock.base, {"debug_endpoints": True, "requests_per_minute": 0},
                              args=("--workers", "2"))
    yield g, key
    g.stop_gracefully()


def pids_answering(g, served: dict, want: int = 2) -> None:
    """GET /debug/state on new connections until `want` workers have answered; counts per pid."""
    def both():
        pid = fresh_get(g.url + "/debug/state").json()["pid"]
        served[pid] = served.get(pid, 0) + 1
        return len(served) >= want

    servers.wait_until(both, timeout=30)


def scrapes_agree(g, expected: dict, n: int = 8) -> None:
    """Waits until a scrape shows `expected` (a request is counted just after it is answered), then
    checks n more scrapes, on new connections and so from either worker, all show it."""
    def shows(text):
        return {e: counter(text, e) for e in expected} == expected

    servers.wait_until(lambda: shows(fresh_get(g.url + "/metrics").text), timeout=10)
    for _ in range(n):
        text = fresh_get(g.url + "/metrics").text
        assert {e: counter(text, e) for e in expected} == expected


def test_counters_of_every_worker_add_up_whichever_answers(workers):
    g, key = workers
    served: dict = {}
    pids_answering(g, served)
    models = 30
    for _ in range(models):
        r = fresh_get(g.base + "/models", headers={"Authorization": "Bearer " + key})
        assert r.status_code == 200
    pids_answering(g, served)  # both workers are still the ones answering
    assert len(served) == 2 and all(n >= 1 for n in served.values())
    scrapes_agree(g, {"/debug/state": sum(served.values()), "/api/v1/models": models})
    text = fresh_get(g.url + "/metrics").text
    assert re.search(r"^tornado_grok_open_requests \S+$", text, re.M)  # gauges: one sum, no pid label
    assert 'pid="' not in text

    # A worker killed outright: its counts stay (counters never go back), its replacement adds to them.
    victim = next(iter(served))
    os.kill(victim, signal.SIGKILL)
    servers.wait_until(lambda: "worker" in g.stderr and "exited with -9" in g.stderr, timeout=10)
    after: dict = {}
    pids_answering(g, after)
    assert victim not in after
    scrapes_agree(g, {"/debug/state": sum(served.values()) + sum(after.values()), "/api/v1/models": models})
