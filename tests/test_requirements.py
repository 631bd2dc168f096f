"""What a user installs: requirements.txt is the runtime (what `python run.py` imports), the test
tools are in requirements-test.txt, and pyproject.toml declares the same two sets (its dependencies,
and the `test` extra)."""

import ast
import importlib.metadata
import os
import re
import sys
import tomllib

from tests.mock_helpers import REPO

# Loaded by pytest only (the grok_mock fixtures for other projects' suites): pytest is theirs.
PYTEST_ONLY = {os.path.join("mock_upstream", "pytest_plugin.py")}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(filename: str) -> dict:
    """{normalised name: version} of a requirement file, its -r includes left out."""
    out = {}
    for line in open(os.path.join(REPO, filename), encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            name, _, version = line.partition("==")
            assert version, "%s: %r is not pinned with ==" % (filename, line)
            out[norm(name)] = version
    return out


def third_party_imports(*folders: str) -> dict:
    """{top-level module: a file importing it} for the imports that are neither stdlib nor ours."""
    ours = {"tornado_grok", "mock_upstream", "tests", "bench", "run"}
    found = {}
    for folder in folders:
        # A script's own folder is on its sys.path (bench/*.py import their neighbours by name).
        ours |= {n[:-3] for n in os.listdir(os.path.join(REPO, folder)) if n.endswith(".py")}
        for root, dirs, files in os.walk(os.path.join(REPO, folder)):
            dirs[:] = [d for d in dirs if d not in ("node_modules", "__pycache__", "results")]
            for name in files:
                path = os.path.join(root, name)
                if not name.endswith(".py") or os.path.relpath(path, REPO) in PYTEST_ONLY:
                    continue
                for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
                    if isinstance(node, ast.Import):
                        tops = [a.name.split(".")[0] for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        tops = [node.module.split(".")[0]]
                    else:
                        continue
                    for top in tops:
                        if top not in sys.stdlib_module_names and top not in ours:
                            found.setdefault(top, os.path.relpath(path, REPO))
    return found


def distributions(modules: dict) -> dict:
    """{module: the normalised names of the distributions that provide it}."""
    provides = importlib.metadata.packages_distributions()
    return {m: {norm(d) for d in provides.get(m, ())} for m in modules}


def test_the_runtime_needs_only_requirements_txt():
    runtime = pinned("requirements.txt")
    imports = third_party_imports("tornado_grok", "mock_upstream")
    missing = {m: (where, sorted(d)) for (m, where), d in zip(imports.items(), distributions(imports).values())
               if not d & runtime.keys()}
    assert missing == {}
    assert {"pytest", "openai", "hypothesis", "requests"}.isdisjoint(runtime), "test tools in the runtime"


def test_the_tests_and_benches_need_only_the_two_files():
    both = dict(pinned("requirements.txt"), **pinned("requirements-test.txt"))
    imports = third_party_imports("tests", "bench")
    missing = {m: (where, sorted(d)) for (m, where), d in zip(imports.items(), distributions(imports).values())
               if not d & both.keys()}
    assert missing == {}


def test_pyproject_declares_the_same_two_sets():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    names = lambda reqs: {norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs}
    assert names(project["dependencies"]) == set(pinned("requirements.txt"))
    assert names(project["optional-dependencies"]["test"]) == set(pinned("requirements-test.txt"))
    with open(os.path.join(REPO, "requirements-test.txt"), encoding="utf-8") as f:
        assert "-r requirements.txt" in f.read().splitlines()


def test_ci_installs_the_test_file():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        assert "-r requirements-test.txt" in f.read()
