"""A bug inside the relay's per-read code (an exception no input should cause) ends the stream cleanly.

No upstream bytes can raise inside `StreamRelay.on_chunk`, so the fault is injected: the gateway
process is started with a `sitecustomize` module (on its PYTHONPATH) that makes the relay's model-name
rewrite raise on the read the test names. Everything else is the real gateway, the real mock and a
real client. The client must get the documented internal error (its status before the first event,
the seed's error event after it, never [DONE]), the log a line with the traceback, and the upstream
transfer must stop.
"""

import os
import uuid

import pytest

from tests.servers import wait_until
from tests.wire import chat_body, post

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SITECUSTOMIZE = '''
import os
import tornado_grok.relay as relay

_real = relay._rewrite
_reads = [0]


def _faulty(data, pairs):
    _reads[0] += 1
    if _reads[0] == int(os.environ["FAULT_AT_READ"]):
        raise RuntimeError("injected relay bug")
    return _real(data, pairs)


relay._rewrite = _faulty
'''

ERROR_EVENT = b'data: {"error":"API error: internal error while relaying the stream"}\n\n'


@pytest.fixture
def faulty_gateway(make_gateway, tmp_path):
    def start(at_read: int):
        folder = tmp_path / ("site%d" % at_read)
        folder.mkdir()
        (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = {"PYTHONPATH": os.pathsep.join([str(folder), ROOT]), "FAULT_AT_READ": str(at_read)}
        return make_gateway(extra_env=env)
    return start


def stream(gateway, key, mock, test_id):
    """The recorded story at its recorded pace (one event per read), silent after ten events: the
    upstream can end only by the gateway hanging up on it."""
    mock.set_fault(test_id, {"stall_after": 10})
    headers = {"Authorization": "Bearer " + key, "X-Mock-Scenario": "story", "X-Mock-Test-Id": test_id,
               "X-Mock-Speed": "1", "Accept": "text/event-stream"}
    try:
        return post(gateway.base + "/chat/completions", chat_body(), headers)
    finally:
        mock.clear_faults(test_id)


def test_a_bug_on_the_first_read_answers_500_with_the_error_event(faulty_gateway, mock):
    gateway, key = faulty_gateway(1)
    test_id = uuid.uuid4().hex
    r = stream(gateway, key, mock, test_id)
    assert r.status_code == 500
    assert r.content == ERROR_EVENT
    assert mock.wait_ended(timeout=5, test_id=test_id)["ended"] == "client_closed"
    # The pump thread reads the child's stderr a moment after the line is written: wait for it.
    wait_until(lambda: "RuntimeError: injected relay bug" in gateway.stderr)
    assert "error relaying a stream" in gateway.stderr


def test_a_bug_mid_stream_ends_it_with_the_error_event_and_no_done(faulty_gateway, mock):
    gateway, key = faulty_gateway(2)
    test_id = uuid.uuid4().hex
    r = stream(gateway, key, mock, test_id)
    assert r.status_code == 200
    assert r.content.startswith(b"data: {")
    assert r.content.endswith(b"}\n\n" + ERROR_EVENT)
    assert b"[DONE]" not in r.content
    assert mock.wait_ended(timeout=5, test_id=test_id)["ended"] == "client_closed"
    wait_until(lambda: "RuntimeError: injected relay bug" in gateway.stderr)
