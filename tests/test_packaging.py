"""The project as a package: the wheel builds, installs into a fresh virtual environment, and a tiny
outside project with its OWN `tests` package runs its pytest against the installed `grok_mock` fixture.

Offline and pinned: the wheel is built with this interpreter's setuptools and wheel (requirements.txt)
by `pip wheel --no-deps --no-build-isolation`, from a copy of the sources (no build/ or egg-info
left in the checkout). Its dependencies, and pytest's, go into the new environment with
`pip --python VENV install --no-index --find-links`, from wheels repacked from this interpreter's installed
distributions (same names, versions and files, taken from their RECORD), so nothing is downloaded
and the versions are those requirements.txt pins. One environment per session (~15-30 s).
"""

import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement

from tests.mock_helpers import REPO

pytest_plugins = ["pytester"]

SOURCES = ("pyproject.toml", "README.md", "tornado_grok", "mock_upstream")
SKIPPED = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}


def clean_env(**extra) -> dict:
    """The environment without anything that would point pip or Python back at this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", **extra)
    return env


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def closure(requirements: list) -> list:
    """The installed distributions these requirements need here, dependencies included."""
    seen, todo = {}, [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen[key] = dist = importlib.metadata.distribution(req.name)
        todo += [Requirement(r) for r in dist.requires or ()]
    return list(seen.values())


def repack(dist, directory: str) -> str:
    """A wheel of an installed distribution, made of the files its RECORD lists."""
    files = [f for f in dist.files if not str(f).startswith("..") and "__pycache__" not in f.parts]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    wheel_meta = dist.read_text("WHEEL") or ""
    tag = next(line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:"))
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = os.path.join(directory, f"{name}-{dist.version}-{tag}.whl")
    rows = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for f in files:
            if f.parts[0] == info and f.name in SKIPPED:
                continue
            data = dist.locate_file(f).read_bytes()
            whl.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append((str(f), f"sha256={digest}", str(len(data))))
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows(rows + [(f"{info}/RECORD", "", "")])
        whl.writestr(f"{info}/RECORD", record.getvalue())
    return path


@pytest.fixture(scope="session")
def venv(tmp_path_factory):
    """A fresh virtual environment with the built wheel and pytest installed; its python."""
    root = tmp_path_factory.mktemp("packaging")
    src, wheels = root / "src", root / "wheels"
    src.mkdir()
    wheels.mkdir()
    for name in SOURCES:
        source = os.path.join(REPO, name)
        if os.path.isdir(source):
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(wheels), str(src)], env=clean_env())
    built = [w for w in os.listdir(wheels) if w.startswith("tornado_grok-")]
    assert len(built) == 1, built
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    for dist in closure(dependencies + ["pytest"]):
        repack(dist, str(wheels))
    env_dir = root / "venv"
    # Without its own pip (ensurepip alone takes 5-15 s): this interpreter's pip installs into it.
    run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], env=clean_env())
    python = str(env_dir / "bin" / "python")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--find-links", str(wheels), "-q",
         os.path.join(wheels, built[0]), "pytest"], env=clean_env())
    return python


OUTSIDE_TEST = '''
import json
import urllib.error
import urllib.request

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def chat(base_url, **body):
    body = {"model": "grok-4.3", "messages": [{"role": "user", "content": "hello there"}], **body}
    request = urllib.request.Request(base_url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer any", "Content-Type": "application/json"})
    try:
        with NO_PROXY.open(request, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_stream_from_the_default_scenario(grok_mock):
    status, headers, body = chat(grok_mock.base_url, stream=True)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert body.endswith(b"data: [DONE]\\n\\n") and b'"delta":{"role":"assistant","content":"Mock"}' in body
    assert [e["scenario"] for e in grok_mock.journal()] == ["default"]


def test_a_scenario_for_this_test(grok_mock):
    assert grok_mock.journal() == []  # the journal holds this test's requests only
    grok_mock.scenario("reasoning")
    status, _, body = chat(grok_mock.base_url, stream=True)
    assert status == 200 and b"reasoning_content" in body
    assert grok_mock.wait_ended()["scenario"] == "reasoning"


def test_a_fault_for_the_next_request(grok_mock):
    grok_mock.fault(status=429, retry_after=7, times=1)
    status, headers, body = chat(grok_mock.base_url)
    assert status == 429 and headers["Retry-After"] == "7"
    assert json.loads(body)["code"] == "Some resource has been exhausted"
    assert chat(grok_mock.base_url)[0] == 200
    assert [e["status"] for e in grok_mock.journal()] == [429, 200]


def test_nothing_leaks_from_the_test_before(grok_mock):
    assert chat(grok_mock.base_url)[0] == 200
    assert [e["scenario"] for e in grok_mock.journal()] == ["default"]


def test_this_project_has_its_own_tests_package():
    import tests
    import mock_upstream
    assert tests.__file__.startswith(__file__.rsplit("/", 1)[0])
    assert "site-packages" in mock_upstream.__file__
'''


def write_outside_project(root) -> None:
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_app.py").write_text(textwrap.dedent(OUTSIDE_TEST))
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly -p no:cacheprovider\n")


def test_an_outside_project_with_its_own_tests_package_uses_the_fixture(venv, tmp_path):
    write_outside_project(tmp_path)
    proc = subprocess.run([venv, "-m", "pytest", "-q"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("5 passed")


def test_the_console_scripts_are_installed_and_name_themselves(venv):
    bin_dir = os.path.dirname(venv)
    for script, usage in (("grok-mock", "usage: grok-mock "), ("grok-record", "usage: grok-record "),
                          ("tornado-grok", "usage: tornado-grok "), ("grok-loadtest", "usage: grok-loadtest ")):
        proc = run([os.path.join(bin_dir, script), "--help"], env=clean_env(), cwd=os.path.dirname(bin_dir))
        assert proc.stdout.startswith(usage), (script, proc.stdout[:200])
    assert "Load-test an OpenAI-compatible" in proc.stdout
    proc = run([os.path.join(bin_dir, "tornado-grok"), "record", "--help"], env=clean_env())
    assert proc.stdout.startswith("usage: tornado-grok record ")
    proc = run([os.path.join(bin_dir, "tornado-grok"), "loadtest", "--help"], env=clean_env())
    assert proc.stdout.startswith("usage: tornado-grok loadtest ")


def test_the_installed_gateway_keeps_its_keys_in_the_working_directory(venv, tmp_path):
    tornado_grok = os.path.join(os.path.dirname(venv), "tornado-grok")
    key = run([tornado_grok, "keys", "add", "demo"], cwd=tmp_path, env=clean_env()).stdout.strip()
    assert key and json.loads((tmp_path / "conf" / "keys.json").read_text())
    assert run([tornado_grok, "keys", "list"], cwd=tmp_path, env=clean_env()).stdout == "demo\n"


def test_the_installed_mock_serves_its_bundled_recordings(venv, tmp_path):
    code = ("from mock_upstream.testing import MockServer\n"
            "with MockServer(speed=0) as m:\n"
            "    print(len(m.scenarios()), 'story' in m.scenarios(), m.base_url.startswith('http://127.0.0.1:'))\n")
    proc = run([venv, "-c", code], cwd=tmp_path, env=clean_env())
    assert proc.stdout.split()[1:] == ["True", "True"] and int(proc.stdout.split()[0]) > 20


# The plugin in this checkout, without building anything: pytester runs an inner pytest with it.

INNER = '''
import json
import urllib.request

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Authorization": "Bearer k"})
    try:
        with NO_PROXY.open(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_one(grok_mock, grok_mock_server):
    assert grok_mock.base_url == grok_mock_server.url + "/v1" and grok_mock.port == grok_mock_server.port
    grok_mock.fault(disconnect_after=1)
    grok_mock.scenario("story")
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    try:
        post(grok_mock.base_url + "/chat/completions", body)
    except Exception:
        pass
    entry = grok_mock.wait_ended()
    assert (entry["scenario"], entry["ended"], entry["events"]) == ("story", "fault", 1)


def test_two(grok_mock):
    assert grok_mock.journal() == []
    status, body = post(grok_mock.base_url + "/chat/completions",
                        {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert status == 200 and b"Mock answer to: x" in body
'''


def test_the_plugin_gives_each_test_a_clean_view_of_one_mock(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", REPO)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "mock_upstream.pytest_plugin", "-p", "no:randomly", "-q")
    result.assert_outcomes(passed=2)


def test_grok_mock_options_can_be_overridden(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", REPO)
    pytester.makeconftest('''
import pytest

@pytest.fixture(scope="session")
def grok_mock_options():
    return {"speed": 0, "require_key": "sekret-key-123456"}
''')
    pytester.makepyfile(test_inner=INNER.split("def test_one")[0] + '''
def test_key(grok_mock):
    assert post(grok_mock.base_url + "/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]})[0] == 401
''')
    result = pytester.runpytest("-p", "mock_upstream.pytest_plugin", "-q")
    result.assert_outcomes(passed=1)
