"""Realistic workloads: a prompt dataset (chat-message JSONL, ShareGPT), seeded
length distributions, --header, --extra-body, multi-turn conversations and --rate-sweep with its
knee. What was sent is read back from tests/sse_target.py's record of every body and header."""
import json
import random
import statistics

import pytest

from tests.sse_target import SSETarget
from tornado_grok.loadtest import cli
from tornado_grok.loadtest.workload import Dist, load_dataset, parse_rates


@pytest.fixture
def target():
    t = SSETarget()
    yield t
    t.close()


def run(capsys, *argv, code=0):
    assert cli.main(list(argv) + ["--json", "--no-progress"]) == code
    return json.loads(capsys.readouterr().out)


def test_dataset_rows_are_sent_in_file_order(target, capsys, tmp_path):
    data = tmp_path / "prompts.jsonl"
    rows = [{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "chunks=2 one"}]},
            {"conversations": [{"from": "human", "value": "chunks=3 two"}, {"from": "gpt", "value": "ignored"}]},
            {"prompt": "chunks=4 three"},
            {"messages": [{"role": "assistant", "content": "no user message: skipped"}]}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    doc = run(capsys, "--url", target.url, "-c", "1", "-n", "4", "--dataset", str(data))
    sent = [b["messages"] for b in target.stats["bodies"]]
    assert sent == [rows[0]["messages"], [{"role": "user", "content": "chunks=3 two"}],
                    [{"role": "user", "content": "chunks=4 three"}], rows[0]["messages"]]
    assert doc["runs"][0]["summary"]["chunks"] == 2 + 3 + 4 + 2
    assert doc["config"]["dataset"] == str(data)


def test_sharegpt_json_array(tmp_path):
    f = tmp_path / "sharegpt.json"
    f.write_text(json.dumps([{"id": "a", "conversations": [
        {"from": "system", "value": "sys"}, {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
        {"from": "human", "value": "q2"}]}, {"id": "b", "conversations": [{"from": "gpt", "value": "x"}]}]))
    assert load_dataset(str(f)) == [([{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"}],
                                     ["q2"])]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_dataset(str(bad))
    assert cli.main(["--url", "http://127.0.0.1:9/v1", "--dataset", str(bad)]) == 2
    assert cli.main(["--url", "http://127.0.0.1:9/v1", "--dataset", str(tmp_path / "missing")]) == 2


def test_max_tokens_from_a_seeded_distribution(target, capsys):
    argv = ["--url", target.url, "-c", "1", "-n", "12", "--prompt", "chunks=20", "--max-tokens", "uniform:1:8",
            "--seed", "5"]
    doc = run(capsys, *argv)
    drawn = [b["max_tokens"] for b in target.stats["bodies"]]
    assert all(1 <= m <= 8 for m in drawn) and len(set(drawn)) > 1
    assert doc["runs"][0]["summary"]["tokens"] == sum(drawn)  # the target honours max_tokens
    run(capsys, *argv)
    assert [b["max_tokens"] for b in target.stats["bodies"][12:]] == drawn  # same seed, same lengths


def test_distributions():
    rng = random.Random(1)
    assert [Dist("7").draw(rng), Dist("fixed:7").draw(rng)] == [7, 7]
    u = [Dist("uniform:64:512").draw(rng) for _ in range(2000)]
    assert min(u) >= 64 and max(u) <= 512 and 250 < statistics.mean(u) < 326
    n = [Dist("normal:200:20").draw(rng) for _ in range(4000)]
    assert 197 < statistics.mean(n) < 203 and 18 < statistics.stdev(n) < 22
    ln = [Dist("lognormal:300:150").draw(rng) for _ in range(20000)]
    assert 290 < statistics.mean(ln) < 310 and 135 < statistics.stdev(ln) < 165 and min(ln) >= 1
    assert Dist("normal:1:50").draw(random.Random(3)) >= 1  # never below one token
    for bad in ("uniform:5", "uniform:9:2", "gamma:1:2", "normal:a:b", "lognormal:0:1", "-3"):
        with pytest.raises(ValueError):
            Dist(bad)


def test_headers_and_extra_body(target, capsys):
    run(capsys, "--url", target.url, "-n", "1", "--prompt", "chunks=2", "--header", "X-Mock-Scenario: story",
        "--header", "X-Tenant:blue", "--extra-body", '{"temperature": 0.2, "search_parameters": {"mode": "off"}}')
    body, headers = target.stats["bodies"][0], target.stats["headers"][0]
    assert headers["X-Mock-Scenario"] == "story" and headers["X-Tenant"] == "blue"
    assert body["temperature"] == 0.2 and body["search_parameters"] == {"mode": "off"}
    assert body["messages"] == [{"role": "user", "content": "chunks=2"}]
    for bad in (["--header", "novalue"], ["--header", "X-A:b\r\nX-B: c"], ["--header", "Content-Length: 3"],
                ["--header", "X A: b"], ["--key", "k", "--header", "Authorization: Api-Key x"],
                ["--extra-body", "[1]"],
                ["--extra-body", "{"]):
        assert cli.main(["--url", target.url, "-n", "1"] + bad) == 2


def test_turns_append_each_answer(target, capsys, tmp_path):
    rows = tmp_path / "turns.jsonl"
    doc = run(capsys, "--url", target.url, "-c", "1", "-n", "6", "--prompt", "chunks=2 size=3", "--turns", "3",
              "--records", str(rows))
    assert [(r["conversation"], r["turn"]) for r in map(json.loads, rows.read_text().splitlines())] == \
        [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    sent = [b["messages"] for b in target.stats["bodies"]]
    user = {"role": "user", "content": "chunks=2 size=3"}
    answer = {"role": "assistant", "content": "xxxxxx"}
    assert sent[:3] == [[user], [user, answer, user], [user, answer, user, answer, user]]
    assert sent[3:] == sent[:3]  # then a new conversation
    assert doc["runs"][0]["summary"]["ok"] == 6
    assert cli.main(["--url", target.url, "--turns", "2", "--api", "responses"]) == 2


def test_sharegpt_turns_use_the_next_human_message(target, capsys, tmp_path):
    f = tmp_path / "conv.jsonl"
    f.write_text(json.dumps({"conversations": [{"from": "human", "value": "chunks=1 first"},
                                               {"from": "gpt", "value": "recorded answer, not sent"},
                                               {"from": "human", "value": "chunks=1 second"}]}) + "\n")
    run(capsys, "--url", target.url, "-c", "1", "-n", "2", "--dataset", str(f), "--turns", "2")
    second = target.stats["bodies"][1]["messages"]
    assert [m["content"] for m in second] == ["chunks=1 first", "xxxxxxxx", "chunks=1 second"]


def test_prompt_tokens_pad_the_prompt(target, capsys):
    run(capsys, "--url", target.url, "-n", "3", "--prompt", "chunks=1", "--prompt-tokens", "uniform:5:9", "--seed", "2")
    for b in target.stats["bodies"]:
        words = b["messages"][-1]["content"].split()
        assert words[0] == "chunks=1" and 5 <= len(words) - 1 <= 9


def test_rate_sweep_reports_the_knee(target, capsys):
    common = ["--url", target.url, "-n", "6", "--rate-sweep", "40,80", "--seed", "1", "--prompt", "chunks=3 delay=20"]
    doc = run(capsys, *common, "--slo", "chunk_gap_p50=60s")
    sw = doc["sweep"]["target"]
    assert [r["rate"] for r in sw["rows"]] == [40.0, 80.0] and sw["knee"] == 80.0
    assert [r["rate"] for r in doc["runs"]] == [40.0, 80.0] and all(r["passed"] for r in sw["rows"])
    assert doc["config"]["mode"] == "open" and target.stats["requests"] == 12
    doc = run(capsys, *common, "--slo", "chunk_gap_p50=5ms", code=1)  # gaps are >= 20 ms: no rate passes
    assert doc["sweep"]["target"]["knee"] is None
    assert doc["failed"] == ["target: no rate of the sweep met the SLOs and --max-error-rate"]
    assert cli.main(["--url", target.url, "--rate-sweep", "10,20", "--rate", "5"]) == 2


def test_rate_sweep_table(target, capsys):
    assert cli.main(["--url", target.url, "-n", "3", "--rate-sweep", "50:150:50", "--prompt", "chunks=2",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "rate sweep [target]: knee 150 req/s" in out and "[target at 100 req/s]" in out


def test_parse_rates():
    assert parse_rates("10:30:10") == [10.0, 20.0, 30.0]
    assert parse_rates("5, 1,2") == [1.0, 2.0, 5.0]
    assert parse_rates("0.5:1.5:0.5") == [0.5, 1.0, 1.5]
    for bad in ("", "a,b", "10:5:1", "1:2:0", "0,1", "1:2"):
        with pytest.raises(ValueError):
            parse_rates(bad)


def test_turns_without_streaming(target, capsys):
    run(capsys, "--url", target.url, "-c", "1", "-n", "2", "--turns", "2", "--no-stream", "--prompt", "chunks=2 size=2")
    assert target.stats["bodies"][1]["messages"] == [
        {"role": "user", "content": "chunks=2 size=2"}, {"role": "assistant", "content": "xxxx"},
        {"role": "user", "content": "chunks=2 size=2"}]
