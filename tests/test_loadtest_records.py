"""--records FILE: one row per request, JSONL or CSV by the extension, with its
start, status, TTFT, chunks, tokens, end and error, so the run can be analysed elsewhere."""
import csv
import json

import pytest

from tests.sse_target import SSETarget
from tornado_grok.loadtest import cli
from tornado_grok.loadtest.records import FIELDS


@pytest.fixture(scope="module")
def target():
    t = SSETarget()
    yield t
    t.close()


def mixed(tmp_path):
    data = tmp_path / "mixed.jsonl"
    data.write_text('{"prompt": "chunks=3 delay=5"}\n{"prompt": "status=429"}\n{"prompt": "chunks=4 error_at=2"}\n')
    return str(data)


def test_jsonl_records(target, capsys, tmp_path):
    out = tmp_path / "runs.jsonl"
    code = cli.main(["--url", target.url, "-c", "1", "-n", "6", "--dataset", mixed(tmp_path), "--records", str(out),
                     "--json", "--no-progress"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1  # 4 of 6 failed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and all(list(r) == list(FIELDS) for r in rows)
    assert [r["end"] for r in rows] == ["done", "http_error", "error_event"] * 2
    assert [r["status"] for r in rows] == [200, 429, 200] * 2
    assert [r["chunks"] for r in rows] == [3, 0, 2] * 2 and [r["tokens"] for r in rows] == [3, None, None] * 2
    assert rows[0]["error"] is None and "status 429 as asked" in rows[1]["error"]
    assert rows[2]["error"] == "API error: in-band error as asked"
    assert rows[1]["ttft_ms"] is None and rows[0]["ttft_ms"] > 0 and rows[0]["e2e_ms"] >= rows[0]["ttft_ms"]
    assert rows[1]["e2e_ms"] is None  # e2e only for whole answers
    assert rows[0]["start_s"] == 0.0 and all(a["start_s"] <= b["start_s"] for a, b in zip(rows, rows[1:]))
    assert all(r["end_s"] >= r["start_s"] and r["target"] == "target" for r in rows)
    assert doc["runs"][0]["summary"]["ends"] == {"done": 2, "http_error": 2, "error_event": 2}


def test_csv_records_of_two_targets(target, capsys, tmp_path):
    other = SSETarget()
    try:
        out = tmp_path / "runs.csv"
        assert cli.main(["--url", target.url, "--compare", other.url, "-n", "3", "--prompt", "chunks=2",
                         "--records", str(out), "--no-progress"]) == 0
    finally:
        other.close()
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["target"] for r in rows] == ["target"] * 3 + ["compare"] * 3
    assert all(r["end"] == "done" and r["chunks"] == "2" and r["tokens"] == "2" and r["error"] == "" for r in rows)
    assert float(rows[3]["start_s"]) >= float(rows[2]["end_s"])  # compare ran after target, one clock
    assert "6 request records written to" in capsys.readouterr().err


def test_records_in_a_missing_directory_exit_2(target, tmp_path):
    assert cli.main(["--url", target.url, "-n", "1", "--records", str(tmp_path / "no" / "r.csv")]) == 2
