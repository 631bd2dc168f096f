"""The load tester's `--api grpc` (xAI's GetCompletionChunk stream) through the gateway to the mock:
content messages are chunks, tokens come from the last message's usage, a refused call is an error
with its gRPC status. Counts are exact (the session's mock plays at speed 0)."""

import json
import subprocess
import sys

from tests import servers


def loadtest(*argv) -> tuple:
    out = subprocess.run([sys.executable, "run.py", "loadtest", "--api", "grpc", "--json", "--no-progress", *argv],
                         cwd=servers.ROOT, capture_output=True, text=True, timeout=120)
    return out.returncode, json.loads(out.stdout), out.stderr


def test_streams_count_chunks_and_usage_tokens(gateway, key):
    code, doc, err = loadtest("--url", "grpc://" + gateway.grpc, "--key", key, "-c", "4", "-n", "8",
                              "--prompt", "chunks=10 delay=20 size=8")
    assert code == 0, err
    run = doc["runs"][0]
    assert doc["config"]["api"] == "grpc"
    assert run["endpoint"] == gateway.grpc + "/xai_api.Chat/GetCompletionChunk"
    s = run["summary"]
    assert s["ends"] == {"done": 8} and s["errors"] == 0
    assert s["chunks"] == 80 and s["tokens"] == 80
    assert s["ttft_ms"]["n"] == 8 and s["gap_ms"]["n"] == 72


def test_a_refused_call_is_an_error_with_its_status(gateway):
    code, doc, err = loadtest("--url", "grpc://" + gateway.grpc, "--key", "tg-not-a-key", "-c", "1", "-n", "2")
    assert code == 1
    s = doc["runs"][0]["summary"]
    assert s["ends"] == {"http_error": 2} and s["status_counts"] == {"UNAUTHENTICATED": 2}
    assert "loadtest: FAILED: target: 2 of 2 requests failed" in err
