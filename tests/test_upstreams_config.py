"""A bad [[upstreams]] list is refused at start: `run.py` exits 2 with one line naming the problem
(as for a bad keys file), and the line never holds a key. A good list starts, with the one-line
default (upstream_url + XAI_API_KEY) untouched when there is no list."""

import os
import subprocess
import sys

import pytest

from tests import servers
from tests import upstreams_helpers as uh

GOOD = {"name": "a", "url": "http://127.0.0.1:9/v1", "key_env": uh.KEY_ENV["a"]}


def run_with(tmp_path, upstreams: list, raw: str = "") -> subprocess.CompletedProcess:
    path = uh.write_pool_config(str(tmp_path / "gateway.toml"), upstreams)
    if raw:
        with open(path, "a") as f:
            f.write(raw)
    keys = str(tmp_path / "keys.json")
    servers.add_key(keys, "k")
    return subprocess.run([sys.executable, "run.py", "--port", "0", "--config", path, "--keys-file", keys],
                          cwd=servers.ROOT, env=uh.pool_env(), capture_output=True, text=True, timeout=60)


def key_file(tmp_path, mode: int, text: str = "xai-from-a-file-0123456789\n") -> str:
    path = str(tmp_path / "upstream.key")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


CASES = [
    ([dict(GOOD), dict(GOOD)], "upstream 'a' is listed twice"),
    ([dict(GOOD, name="a b")], "upstreams[0]: name must be"),
    ([dict(GOOD, url="ftp://x")], "upstream 'a': url must be an http:// or https:// URL"),
    ([dict(GOOD, key_env="TG_TEST_NOT_SET_ANYWHERE")], "environment variable TG_TEST_NOT_SET_ANYWHERE is not set"),
    ([{"name": "a", "url": "http://127.0.0.1:9/v1"}], "give exactly one of key_env"),
    ([dict(GOOD, weight=0)], "weight must be a number over 0"),
    ([dict(GOOD, max_concurrent=-1)], "max_concurrent must be a whole number"),
    ([dict(GOOD, models="grok-4.3")], "models must be a list of model names"),
    ([dict(GOOD, region="eu")], "unknown field 'region'"),
    ([dict(GOOD, key="xai-in-the-toml-0123456789")], "a key never goes in the TOML file"),
]


@pytest.mark.parametrize("upstreams,message", CASES, ids=[c[1][:30] for c in CASES])
def test_a_bad_list_is_one_line_at_start(tmp_path, upstreams, message):
    done = run_with(tmp_path, upstreams)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run.py: configuration error: ") and message in lines[0]
    assert "xai-in-the-toml" not in done.stderr and all(k not in done.stderr for k in uh.KEYS.values())


def test_a_key_file_others_can_read_is_refused(tmp_path):
    path = key_file(tmp_path, 0o644)
    done = run_with(tmp_path, [{"name": "a", "url": "http://127.0.0.1:9/v1", "key_file": path}])
    assert done.returncode == 2
    assert "can be read by group or others (chmod 600 it)" in done.stderr
    assert "xai-from-a-file" not in done.stderr


def test_an_empty_list_is_refused(tmp_path):
    done = run_with(tmp_path, [], raw="upstreams = []\n")
    assert done.returncode == 2 and "[[upstreams]] must be a non-empty array of tables" in done.stderr


def test_a_key_file_only_the_user_reads_is_used(tmp_path, mock):
    """key_file with mode 0600: the gateway starts and the upstream gets that key."""
    path = key_file(tmp_path, 0o600, "xai-from-a-file-0123456789\n")
    config = uh.write_pool_config(str(tmp_path / "gateway.toml"),
                                  [{"name": "a", "url": mock.base, "key_file": path},
                                   {"name": "b", "url": mock.base, "key_env": uh.KEY_ENV["b"]}])
    keys = str(tmp_path / "keys.json")
    key = servers.add_key(keys, "k")
    g = servers.Gateway([sys.executable, "run.py", "--port", "0", "--config", config, "--keys-file", keys],
                        uh.pool_env())
    try:
        tid = "kf-" + os.urandom(6).hex()
        for _ in range(2):  # equal weights: one to each
            assert uh.chat(g, key, tid).status_code == 200
        seen = sorted(e["headers"]["authorization"] for e in uh.seen(mock, tid))
        assert seen == sorted(["Bearer xai-…6789", "Bearer %s…%s" % (uh.KEYS["b"][:4], uh.KEYS["b"][-4:])])
        assert "Upstreams: a (%s), b (%s)" % (mock.base, mock.base) in g.stdout
    finally:
        g.stop()


def test_the_readme_configuration_works_against_two_mocks(tmp_path):
    """README "Several upstreams": its TOML, with the two mocks' ports (free ones here), as written."""
    import re
    from tests.mock_helpers import start_mock
    with open(os.path.join(servers.ROOT, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## Several upstreams", 1)[1]
    toml = re.search(r"<<'TOML'\n(.*?)\nTOML\n", section, re.S).group(1)
    assert 'key_env = "TEAM_A_KEY"' in toml and "8601" in toml and "8602" in toml
    mocks = [start_mock("--speed", "0"), start_mock("--speed", "0")]
    g = None
    try:
        config = str(tmp_path / "two-upstreams.toml")
        with open(config, "w") as f:
            f.write(toml.replace("8601", str(mocks[0].port)).replace("8602", str(mocks[1].port)))
        keys = str(tmp_path / "keys.json")
        key = servers.add_key(keys, "two-upstreams")
        env = dict(uh.pool_env(), TEAM_A_KEY="mock-key-a", TEAM_B_KEY="mock-key-b")
        g = servers.Gateway([sys.executable, "run.py", "--port", "0", "--config", config, "--keys-file", keys], env)
        for _ in range(4):  # weights 3:1
            r = uh.chat(g, key)
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Mock answer to: hi"
        assert [len(m.journal()) for m in mocks] == [3, 1]
        health = __import__("requests").get(g.url + "/healthz").json()
        assert [u["name"] for u in health["upstreams"]] == ["team-a", "team-b"]
    finally:
        if g is not None:
            g.stop()
        for m in mocks:
            m.stop()
