"""Realistic pacing: seeded draws are deterministic, and the timing plan follows the distributions.

The checks are on the plan (the Steps and their delays the player would sleep), never on the wall
clock; the wire tests run the mock at speed 0 and check what a plan says: chunk count, usage,
finish_reason.
"""

import math
import statistics
import subprocess
import sys
import textwrap

import pytest
import requests

from mock_upstream import generated, recordings, scenarios
from mock_upstream.pacing import PacingError, parse_distribution, parse_pacing
from tests.mock_helpers import REPO, dechunk, mock_headers, raw_exchange, raw_post, start_mock

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}],
        "stream_options": {"include_usage": True}}
N = 2000


def plan(pacing, body=BODY):
    return generated.paced(dict(body), pacing, "chatcmpl-p")


def content_steps(p):
    return [s for s in p.steps if b'"content":' in s.data]


def usage_of(p) -> bytes:
    return p.steps[-2].data


def draws(spec, n=N):
    rng_pacing = parse_pacing({"ttft_ms": spec, "seed": 5})
    return [rng_pacing.draw().ttft * 1000.0 for _ in range(n)]


def test_the_same_seed_gives_the_same_plans_in_the_same_order():
    table = {"seed": 42, "jitter": 0.3, "ttft_ms": {"dist": "lognormal", "median": 300, "sigma": 0.5},
             "tokens_per_s": {"dist": "normal", "mean": 60, "sd": 12, "min": 5},
             "output_tokens": {"dist": "uniform", "min": 10, "max": 80}}
    first, second = parse_pacing(table), parse_pacing(dict(table))
    a = [plan(first) for _ in range(30)]
    b = [plan(second) for _ in range(30)]
    assert [[(s.delay, s.data) for s in p.steps] for p in a] == [[(s.delay, s.data) for s in p.steps] for p in b]
    assert len({len(p.steps) for p in a}) > 5 and len({p.steps[0].delay for p in a}) == 30  # really drawn
    other = parse_pacing(dict(table, seed=43))
    assert [[s.delay for s in plan(other).steps] for _ in range(30)] != [[s.delay for s in p.steps] for p in a]
    # The n-th draw does not depend on what was drawn before it (concurrency cannot reorder draws).
    assert parse_pacing(table).draw(17) == first.draw(17)


def test_fixed_pacing_gives_exactly_that_plan():
    pacing = parse_pacing({"ttft_ms": 250, "tokens_per_s": 40, "output_tokens": 12})
    p = plan(pacing)
    steps = content_steps(p)
    assert len(steps) == 12 and steps[0].delay == 0.25 and {s.delay for s in steps[1:]} == {0.025}
    assert [s.data[-40:] for s in p.steps[-3:]] == [
        b'ices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'[-40:],
        b'"completion_tokens":12,"total_tokens":13}}\n\n'[-40:], b"data: [DONE]\n\n"]
    assert p.steps[-1].done and {s.delay for s in p.steps[-3:]} == {0.0}
    assert b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":12,"total_tokens":13}' in usage_of(p)
    assert steps[0].data.startswith(b'data: {"id":"chatcmpl-p","object":"chat.completion.chunk",')
    assert b'"delta":{"role":"assistant","content":"The"}' in steps[0].data


def test_uniform_draws_stay_in_range_and_spread_over_it():
    values = draws({"dist": "uniform", "min": 100, "max": 300})
    assert min(values) >= 100 and max(values) <= 300
    assert abs(statistics.mean(values) - 200) < 5  # sd of the mean: 57.7 / sqrt(2000) = 1.3
    assert min(values) < 105 and max(values) > 295


def test_normal_draws_have_the_mean_and_sd_and_are_clamped():
    values = draws({"dist": "normal", "mean": 500, "sd": 100})
    assert abs(statistics.mean(values) - 500) < 10 and abs(statistics.stdev(values) - 100) < 8
    clamped = draws({"dist": "normal", "mean": 500, "sd": 100, "min": 450, "max": 520})
    assert min(clamped) == 450 and max(clamped) == 520


def test_lognormal_draws_have_the_median_and_sigma():
    values = draws({"dist": "lognormal", "median": 300, "sigma": 0.5})
    assert abs(statistics.median(values) - 300) < 15
    logs = [math.log(v) for v in values]
    assert abs(statistics.stdev(logs) - 0.5) < 0.04 and min(values) > 0


def test_the_plan_follows_speed_length_and_jitter():
    pacing = parse_pacing({"seed": 3, "jitter": 0.25, "chunk_tokens": 2,
                           "ttft_ms": {"dist": "uniform", "min": 100, "max": 200},
                           "tokens_per_s": {"dist": "fixed", "value": 50},
                           "output_tokens": {"dist": "normal", "mean": 40, "sd": 10, "min": 5}})
    factors, lengths = [], []
    for _ in range(400):
        p = plan(pacing)
        steps = content_steps(p)
        tokens = int(usage_of(p).split(b'"completion_tokens":')[1].split(b",")[0])
        lengths.append(tokens)
        assert len(steps) == math.ceil(tokens / 2)
        assert 0.1 <= steps[0].delay <= 0.2
        factors += [s.delay / (2 / 50) for s in steps[1:]]  # gap of 2 tokens at 50 tokens/s: 40 ms
    assert min(factors) >= 0.75 and max(factors) <= 1.25
    assert abs(statistics.mean(factors) - 1.0) < 0.01
    assert min(factors) < 0.77 and max(factors) > 1.23
    assert abs(statistics.mean(lengths) - 40) < 1.5 and min(lengths) >= 5


def test_max_tokens_caps_the_length_with_finish_reason_length():
    pacing = parse_pacing({"ttft_ms": 10, "tokens_per_s": 100, "output_tokens": 50})
    p = plan(pacing, dict(BODY, max_tokens=7))
    assert len(content_steps(p)) == 7 and b'"finish_reason":"length"' in p.steps[-3].data
    whole = plan(pacing, {"model": "m", "max_completion_tokens": 3, "messages": BODY["messages"]})
    assert not whole.stream and math.isclose(whole.body_delay, 0.01 + 2 * 0.01)
    assert b'"content":"The model writes"},"finish_reason":"length"' in whole.body


@pytest.mark.parametrize("table, message", [
    ({"ttft": 5}, "pacing: unknown field(s) ttft; known: chunk_tokens, jitter, output_tokens, seed, tokens_per_s, ttft_ms"),
    ({"ttft_ms": {"dist": "gamma"}}, "pacing.ttft_ms: a number, or a table with dist = fixed | uniform | normal | lognormal"),
    ({"ttft_ms": {"dist": "normal", "mean": 5}}, "pacing.ttft_ms: dist = 'normal' needs mean, sd"),
    ({"ttft_ms": {"dist": "uniform", "min": 5, "max": 1}}, "pacing.ttft_ms: min must not be above max"),
    ({"ttft_ms": {"dist": "uniform", "min": 1, "max": 5, "sd": 1}}, "pacing.ttft_ms: unknown field(s) sd for dist = 'uniform'"),
    ({"tokens_per_s": 0}, "pacing.tokens_per_s must be greater than 0"),
    ({"output_tokens": -3}, "pacing.output_tokens.value must be a non-negative number"),
    ({"jitter": 1.5}, "pacing.jitter must be a number from 0 to below 1"),
    ({"chunk_tokens": 0}, "pacing.chunk_tokens must be a whole number of at least 1"),
])
def test_bad_pacing_tables_are_refused_with_the_field_named(table, message):
    with pytest.raises(PacingError) as e:
        parse_pacing(table)
    assert str(e.value) == message


def test_a_bare_number_is_fixed():
    assert parse_distribution(7, "x").draw(None) == 7.0


def test_the_bundled_paced_scenarios_load():
    registry = scenarios.Registry(recordings.load_all())
    for name in ("paced", "paced_chat", "paced_reasoning"):
        assert registry.get(name).generator == "paced" and registry.get(name).pacing is not None
    assert registry.get("paced_reasoning").pacing.chunk_tokens == 3


SCENARIOS = textwrap.dedent("""
    [[scenario]]
    name = "feel"
    [scenario.pacing]
    seed = 9
    jitter = 0.1
    ttft_ms = { dist = "lognormal", median = 200, sigma = 0.3 }
    tokens_per_s = { dist = "normal", mean = 70, sd = 10, min = 10 }
    output_tokens = { dist = "uniform", min = 5, max = 30 }

    [[scenario]]
    name = "feel_cut"
    base = "feel"
    fault = { disconnect_after = 2 }
""")


@pytest.fixture(scope="module")
def paced_mock(tmp_path_factory):
    path = tmp_path_factory.mktemp("pacing") / "scenarios.toml"
    path.write_text(SCENARIOS)
    with start_mock("--speed", "0", "--scenarios", str(path)) as m:
        yield m, path


def post(mock, body, **headers):
    s = requests.Session()
    s.trust_env = False
    return s.post(mock.base + "/chat/completions", json=body, headers={"Authorization": "Bearer k", **headers}, timeout=10)


def test_over_the_wire_each_request_gets_the_next_draw(paced_mock):
    mock, path = paced_mock
    import tomllib

    expected = parse_pacing(tomllib.loads(path.read_text())["scenario"][0]["pacing"])
    for n in (1, 2, 3):
        r = post(mock, dict(BODY, model="mock-feel"))
        want = expected.draw(n).output_tokens
        assert r.status_code == 200 and r.content.count(b'"delta":{') == want + 1  # content chunks + finish
        assert r.content.count(b'"choices":[],"usage":') == 1
        assert f'"completion_tokens":{want},'.encode() in r.content and r.content.endswith(b"data: [DONE]\n\n")
    r = post(mock, {"model": "grok-4.3", "messages": BODY["messages"]}, **mock_headers("feel"))
    assert r.json()["usage"]["completion_tokens"] == expected.draw(4).output_tokens
    assert mock.wait_ended()["scenario"] == "feel"


def test_a_paced_scenario_takes_faults(paced_mock):
    mock, _ = paced_mock
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {"Authorization": "Bearer k",
                                                                         **mock_headers("feel_cut", test_id="cut")}))
    head, body, complete = dechunk(raw)
    assert complete is False and body.count(b"data: {") == 2  # dropped after 2 events: no terminator
    assert mock.wait_ended(test_id="cut")["ended"] == "fault"


def test_a_bad_pacing_table_stops_the_mock_at_start(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[scenario]]\nname = "x"\n[scenario.pacing]\nttft_ms = { dist = "normal", mean = 1 }\n')
    proc = subprocess.run([sys.executable, "-m", "mock_upstream", "--port", "0", "--scenarios", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == "mock_upstream: error: bad.toml: scenario #1: pacing.ttft_ms: dist = 'normal' needs mean, sd\n"
