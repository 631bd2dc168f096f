"""The keys file under operator faults: many `run.py keys add` at once, and a file that is bad at start
or goes bad while the gateway runs. Real processes only (run.py, the gateway, the mock upstream)."""

import hashlib
import json
import os
import subprocess
import sys
import time

import requests

from tests import servers
from tests.servers import ROOT, UPSTREAM_KEY, wait_until


def run_py(*args, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
    env.update(XAI_API_KEY=UPSTREAM_KEY, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def models(gateway, key):
    return requests.get(gateway.base + "/models", headers={"Authorization": "Bearer " + key}, timeout=10)


def test_concurrent_keys_add_loses_no_key(tmp_path, mock):
    path = str(tmp_path / "keys.json")
    procs = [subprocess.Popen([sys.executable, "run.py", "keys", "add", "app%02d" % i, "--keys-file", path],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(20)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [err for _, err in outs]
    printed = [out.strip() for out, _ in outs]
    stored = json.load(open(path))["keys"]
    assert sorted(e["name"] for e in stored) == ["app%02d" % i for i in range(20)]
    assert {e["sha256"] for e in stored} == {hashlib.sha256(k.encode()).hexdigest() for k in printed}
    assert os.stat(path).st_mode & 0o077 == 0
    assert sorted(os.listdir(tmp_path)) == ["keys.json", "keys.json.lock"]  # no temp file left behind
    gateway = servers.start_gateway(str(tmp_path), mock.base)
    try:
        assert [models(gateway, k).status_code for k in printed] == [200] * 20
    finally:
        gateway.stop()


BAD_FILES = {
    "json": ('{"keys": [\n  {"name": "a", "sha256": "%s"}\n  {"name": "b"}\n]}\n' % ("0" * 64),
             "line 3 column 3: not valid JSON: Expecting ',' delimiter"),
    "shape": ('{"keys": {"name": "a"}}', 'expected an object {"keys": [...]}'),
    "entry": ('{"keys": [{"name": "a", "sha256": "not-a-digest"}]}',
              'keys[0] (a): "sha256" must be 64 lowercase hex digits'),
}


def bad_keys_file(tmp_path, kind):
    path = tmp_path / "keys.json"
    if kind == "unreadable":
        path.mkdir()  # a folder where the file should be (chmod 000 would not stop root)
        return str(path), "cannot read it: Is a directory"
    text, message = BAD_FILES[kind]
    path.write_text(text)
    return str(path), message


def assert_one_line_naming_the_file(out, path, message, workers):
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if path in line]
    assert lines == ["run.py: configuration error: keys file %s: %s" % (path, message)], out.stderr[-3000:]
    assert "starting a new one" not in out.stderr and "listening" not in out.stdout
    if workers:
        assert "worker" not in out.stderr  # refused before any worker was forked


def test_bad_keys_file_at_start_is_one_line_and_exit_2(tmp_path):
    for kind in ("json", "shape", "entry", "unreadable"):
        folder = tmp_path / kind
        folder.mkdir()
        path, message = bad_keys_file(folder, kind)
        for workers in (False, True):
            args = ["--port", "0", "--keys-file", path, "--upstream-url", "http://127.0.0.1:9/v1"]
            out = run_py(*(args + (["--workers", "2"] if workers else [])))
            assert_one_line_naming_the_file(out, path, message, workers)
        if kind != "unreadable":  # and `keys add` / `keys list` refuse it rather than overwrite it
            before = open(path).read()
            added = run_py("keys", "add", "more", "--keys-file", path)
            assert added.returncode == 2 and added.stdout == "" and path in added.stderr
            assert open(path).read() == before
            listed = run_py("keys", "list", "--keys-file", path)
            assert listed.returncode == 2 and message in listed.stderr and "Traceback" not in listed.stderr


def test_keys_file_corrupted_while_running_keeps_the_last_good_keys(tmp_path, mock):
    folder = str(tmp_path)
    path = os.path.join(folder, "keys.json")
    good = servers.add_key(path, "good")
    gateway = servers.start_gateway(folder, mock.base)
    try:
        assert models(gateway, good).status_code == 200
        with open(path, "w") as f:
            f.write('{"keys": [\n  {"name": "good",\n')  # cut short, as a full disk or a bad edit leaves it
        bad_line = "keys file %s: line 3 column 1: not valid JSON" % path
        # Unknown keys make the gateway look at the file again (read again only when it changed).
        r, = wait_until(lambda: (lambda r: [r] if bad_line in gateway.stderr else None)(
            models(gateway, "tg-unknown")), timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        seen = time.monotonic()
        # More unknown keys for over a second: still 401, the good key still works, logged only once.
        while time.monotonic() - seen < 1.5:
            assert models(gateway, "tg-unknown-too").status_code == 401
        assert models(gateway, good).status_code == 200
        assert gateway.stderr.count(bad_line) == 1, gateway.stderr
        assert "Traceback" not in gateway.stderr
        # The operator repairs it: the new file is used, and there is nothing more to say.
        os.unlink(path)
        fresh = servers.add_key(path, "fresh")
        wait_until(lambda: models(gateway, fresh).status_code == 200, timeout=10)
        assert models(gateway, good).status_code == 401  # not in the repaired file
        assert gateway.stderr.count(bad_line) == 1
    finally:
        gateway.stop()


def test_a_key_added_right_after_an_unknown_key_was_refused_works_at_once(tmp_path, mock):
    """The gateway looked at the file for the unknown key a moment ago; the next look, for the new
    key, must not wait (it waited up to a second, and the new key got a 401 meanwhile)."""
    folder = str(tmp_path)
    path = os.path.join(folder, "keys.json")
    servers.add_key(path, "first")
    gateway = servers.start_gateway(folder, mock.base)
    try:
        assert models(gateway, "tg-unknown").status_code == 401
        added = servers.add_key(path, "added")
        assert models(gateway, added).status_code == 200
    finally:
        gateway.stop()
