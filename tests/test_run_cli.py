"""run.py as a newcomer uses it: the gateway with no XAI_API_KEY, `keys add`, `mock`, bad config."""

import json
import os
import re
import subprocess
import sys

from tests import needs, servers
from tests.servers import ROOT, Process

SEED_CURL = re.compile(r"^\s+(curl -N .*)$", re.M)


def run(*args, env=None):
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)


def test_keys_add_prints_only_the_key_and_stores_only_its_hash(tmp_path):
    path = str(tmp_path / "keys.json")
    out = run("keys", "add", "ci", "--keys-file", path)
    assert out.returncode == 0
    key = out.stdout.strip()
    assert out.stdout == key + "\n"
    assert re.fullmatch(r"tg-[A-Za-z0-9_-]{43}", key)
    stored = open(path).read()
    assert key not in stored and key[3:] not in stored
    assert json.loads(stored)["keys"][0]["name"] == "ci"
    assert os.stat(path).st_mode & 0o077 == 0  # readable by its owner only
    again = run("keys", "add", "ci", "--keys-file", path)
    assert again.returncode == 2 and "exists already" in again.stderr
    assert run("keys", "list", "--keys-file", path).stdout == "ci\n"


def test_newcomer_path_serves_the_seed_curl_from_the_bundled_mock(tmp_path):
    needs.program("curl", "apt-get install curl")
    gateway = servers.start_gateway(str(tmp_path), upstream_url=None, upstream_key=None)
    try:
        assert "No XAI_API_KEY set: serving from the bundled mock upstream" in gateway.stdout
        assert "tg-dev-local-mock-key" in gateway.stdout
        command = SEED_CURL.search(gateway.stdout).group(1)
        assert ":%d/" % gateway.port in command
        out = subprocess.run(["bash", "-c", command], capture_output=True, timeout=60, check=True).stdout
        assert out.startswith(b"data: {")
        assert out.endswith(b"data: [DONE]\n\n")
        assert b'"model":"grok-4-1-fast-non-reasoning"' in out
    finally:
        gateway.stop()


def test_dev_key_is_refused_when_a_real_upstream_is_configured(gateway):
    import requests
    r = requests.get(gateway.base + "/models", headers={"Authorization": "Bearer tg-dev-local-mock-key"},
                     timeout=10)
    assert r.status_code == 401


def test_mock_runs_alone(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    mock = Process([sys.executable, "run.py", "mock", "--port", "0", "--speed", "0"], env)
    try:
        import requests
        r = requests.get(mock.url + "/v1/models", headers={"Authorization": "Bearer x"}, timeout=10)
        assert r.status_code == 200 and r.json()["object"] == "list"
    finally:
        mock.stop()


def test_bad_configuration_is_a_clear_error(tmp_path):
    config = servers.write_config(str(tmp_path / "g.toml"), {"stream_fallback_format": "xml"})
    out = run("--config", config, "--port", "0")
    assert out.returncode == 2
    assert "stream_fallback_format must be one of json, sse, not 'xml'" in out.stderr
    (tmp_path / "bad.toml").write_text("[server]\nportt = 1\n")
    out = run("--config", str(tmp_path / "bad.toml"))
    assert out.returncode == 2 and "unknown setting 'portt'" in out.stderr
