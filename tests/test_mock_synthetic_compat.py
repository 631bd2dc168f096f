"""The synthetic generator against the original: shared/bench/mock_sse.js, run with node when both
are available, must send the same bytes (apart from the `created` timestamp)."""

import os
import re
import shutil
import subprocess

import pytest
import requests

from tests.mock_helpers import REPO, start_mock

MOCK_SSE = os.environ.get("MOCK_SSE_JS", os.path.join(os.path.dirname(REPO), "shared", "bench", "mock_sse.js"))
pytestmark = pytest.mark.skipif(not (shutil.which("node") and os.path.exists(MOCK_SSE)),
                                reason="needs node and shared/bench/mock_sse.js")
CREATED = re.compile(rb'"created":\d+')


@pytest.fixture(scope="module")
def both():
    node = subprocess.Popen(["node", MOCK_SSE, "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = node.stdout.readline().decode()
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
    assert CREATED.sub(b'"created":0', got[0].content) == CREATED.sub(b'"created":0', got[1].content)
