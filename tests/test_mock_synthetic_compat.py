"""The synthetic generator against the original: shared/bench/mock_sse.js, run with node when both
are available, must send the same bytes (apart from the `created` timestamp, and the usage in a
chunk of its own as xAI sends it, where mock_sse.js puts it on the finish chunk)."""

import os
import re
import subprocess

import pytest
import requests

from tests import needs
from tests.mock_helpers import REPO, _read_line, start_mock

MOCK_SSE = os.environ.get("MOCK_SSE_JS", os.path.join(os.path.dirname(REPO), "shared", "bench", "mock_sse.js"))
CREATED = re.compile(rb'"created":\d+')


@pytest.fixture(scope="module")
def both():
    node_path = needs.program("node", "apt-get install nodejs")
    if not os.path.exists(MOCK_SSE):
        pytest.skip("%s not found (the original generator lives outside this repository; set MOCK_SSE_JS "
                    "to its path)" % MOCK_SSE)
    node = subprocess.Popen([node_path, MOCK_SSE, "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = _read_line(node, 15)  # with a deadline: a node that never prints fails, not hangs
        node_url = line.strip().rsplit(" ", 1)[1]
        with start_mock("--speed", "0") as mock:
            yield node_url, mock.url
    finally:
        node.terminate()
        node.wait(10)


@pytest.mark.parametrize("text", ["chunks=3 size=5", "chunks=40 delay=0 size=1", "chunks=0", "hello chunks=300 size=70",
                                  "chunks=2 delay=1 size=0", "x chunks = 5 size=-3"])
@pytest.mark.parametrize("stream,usage", [(True, False), (True, True), (False, False)])
def test_same_bytes_as_mock_sse_js(both, text, stream, usage):
    body = {"model": "grok-x", "stream": stream, "messages": [{"role": "system", "content": "be brief"},
                                                               {"role": "user", "content": text}]}
    if usage:
        body["stream_options"] = {"include_usage": True}
    s = requests.Session()
    s.trust_env = False
    got = [s.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}, timeout=10)
           for url in both]
    assert got[0].status_code == got[1].status_code == 200
    original, ours = (CREATED.sub(b'"created":0', r.content) for r in got)
    if usage:
        original = usage_in_its_own_chunk(original)
    assert ours == original


FINISH_WITH_USAGE = re.compile(rb'^(data: (\{"id":.*?"model":.*?,)"choices":(.*)\]),"usage":(\{[^{}]*\})\}\n\n', re.M)


def usage_in_its_own_chunk(stream: bytes) -> bytes:
    """mock_sse.js's stream with usage moved off its finish chunk into a chunk of its own with
    `choices: []` (xAI's layout, which the mock follows: the one documented difference)."""
    moved, n = FINISH_WITH_USAGE.subn(rb'\1}\n\ndata: \2"choices":[],"usage":\4}\n\n', stream)
    assert n == 1, stream[-400:]
    return moved
