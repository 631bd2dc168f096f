"""What travels on the wire: a dropped connection, a close-delimited body, a split UTF-8 character,
the client leaving mid-stream, and the flags of the command line."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from mock_upstream import recordings
from tests.mock_helpers import REPO, dechunk, mock_headers, raw_exchange, raw_post, start_mock

AUTH = {"Authorization": "Bearer test-key-0123456789"}
BODY = {"model": "my-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
RECORDINGS = recordings.load_all()


@pytest.fixture(scope="module")
def mock():
    with start_mock("--speed", "0") as m:
        yield m


def test_disconnect_drops_the_connection_mid_body(mock):
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("disconnect", "t-drop")}))
    head, body, complete = dechunk(raw)
    assert head.startswith(b"HTTP/1.1 200 ") and complete is False
    events = body.split(b"\n\n")
    assert len(events) == 4 and events[-1] == b"" and b"[DONE]" not in body
    assert all(json.loads(e[6:])["model"] == "my-model" for e in events[:3])
    assert mock.wait_ended(test_id="t-drop")["ended"] == "fault"


def test_no_chunked_is_close_delimited(mock):
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("no_chunked", "t-nc")}))
    head, body, complete = dechunk(raw)
    assert complete is None
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    plan = RECORDINGS["no_chunked"].plan("my-model", True, False)
    assert body == b"".join(s.data for s in plan.steps) and body.endswith(b"data: [DONE]\n\n")
    assert mock.wait_ended(test_id="t-nc")["ended"] == "complete"


def test_utf8_split_bytes(mock):
    raw = raw_exchange(mock.url, raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("utf8_split")}))
    head, body, complete = dechunk(raw)
    assert complete is True
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "")
                   for e in body.decode("utf-8").split("\n\n") if e.startswith("data: {"))
    assert text == "h\u00e9llo w\u00f6rld \U0001F680 caf\u00e9 \u65e5\u672c"
    # The split event travels in two HTTP chunks, the first ending inside a multi-byte character.
    rest, pieces = raw.partition(b"\r\n\r\n")[2], []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        pieces.append(rest[:size])
        rest = rest[size + 2:]
    cut = [p for p in pieces if not p.endswith(b"\n\n")]
    assert len(cut) == 2
    for piece in cut:
        with pytest.raises(UnicodeDecodeError):
            piece.decode("utf-8")


def test_client_leaving_mid_stream_is_journaled(mock):
    session = requests.Session()
    session.trust_env = False
    r = session.post(mock.base + "/chat/completions", json=BODY, stream=True, timeout=10,
                     headers={**AUTH, **mock_headers("stall", "t-leave")})
    first = next(r.iter_lines())
    assert first.startswith(b"data: {")
    seq = mock.wait_entry(test_id="t-leave")["seq"]
    r.close()
    entry = mock.wait_ended(seq, timeout=10)
    assert entry["ended"] == "client_closed" and entry["ended_at"] >= entry["time"]


def test_cli_refuses_non_loopback_host():
    proc = subprocess.run([sys.executable, "-m", "mock_upstream", "--host", "0.0.0.0", "--port", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--allow-remote" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_exits_cleanly_on_signals(sig):
    mock = start_mock()
    assert mock.url.startswith("http://127.0.0.1:") and mock.port > 0
    with socket.create_connection(("127.0.0.1", mock.port)) as open_stream:  # a stall in progress
        open_stream.sendall(raw_post("/v1/chat/completions", BODY, {**AUTH, **mock_headers("stall", "t-sig")}))
        mock.wait_entry(test_id="t-sig")
        mock.proc.send_signal(sig)
        assert mock.proc.wait(10) == 0
    assert mock.stderr() == ""
    mock.stop()


def test_require_key_flag_and_env():
    for args, env in ((("--require-key", "right-key-123456"), None), ((), {"MOCK_REQUIRE_KEY": "right-key-123456"})):
        with start_mock("--speed", "0", *args, env=env) as mock:
            url = mock.base + "/models"
            session = requests.Session()
            session.trust_env = False
            assert session.get(url, headers={"Authorization": "Bearer right-key-123456"}).status_code == 200
            wrong = session.get(url, headers={"Authorization": "Bearer wrong-key-98765432"})
            assert wrong.status_code == 401
            assert wrong.json()["error"].startswith("Incorrect API key provided: wron…5432")
            assert "wrong-key-98765432" not in wrong.text
            missing = session.get(url)
            assert missing.status_code == 401 and set(missing.json()) == {"code", "error"}


def test_environment_is_not_needed_for_the_module():
    env = {k: v for k, v in os.environ.items() if k != "MOCK_REQUIRE_KEY"}
    proc = subprocess.run([sys.executable, "-m", "mock_upstream", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--speed" in proc.stdout
