"""Mutation testing of the gateway's logic modules: how many single-point bugs do the tests catch?

For each module, every mutant (one small change a programmer could make by mistake) is applied to a
copy of the repository, and the test modules mapped to that module are run on the copy
(`pytest -x -q -p no:randomly --timeout 60`, in a fork of this process that already imported pytest and
the heavy libraries: a mutant of a fast module costs well under a second). A failing run kills the mutant; a passing run means
the tests would not notice that bug. Prints the score per module and every surviving mutant.

    python3 bench/mutation.py                        # the fast modules (FAST below), one at a time
    python3 bench/mutation.py tornado_grok/sse.py    # one module
    python3 bench/mutation.py --all                  # every mapped module (slow: gateway tests)
    python3 bench/mutation.py --list tornado_grok/sse.py   # the mutants only, nothing run
    python3 bench/mutation.py --repo DIR ...         # measure another checkout (e.g. an older commit)

Mutation operators (on the AST, so a mutant is always valid Python): flip a comparison (< <=, == !=,
in / not in, is / is not), an integer constant +1 and -1, True <-> False, + <-> -, and <-> or,
negate an if / while / ternary condition, delete a simple statement (replaced by `pass`), replace a
returned value by None (or a returned bool by its opposite). Docstrings, string constants and type
annotations are left alone. Not part of CI: a few minutes per module on two cores.
"""

import argparse
import ast
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# module -> the test modules that guard it (missing ones are skipped, so an older checkout works).
MAP = {
    "tornado_grok/sse.py": ["tests/test_sse.py", "tests/test_sse_properties.py", "tests/test_responses_sse.py",
                            "tests/test_loop_sse_bounds.py"],
    "tornado_grok/errors.py": ["tests/test_errors.py", "tests/test_security_redact.py"],
    "tornado_grok/validate.py": ["tests/test_validate_rest.py", "tests/test_validate_responses_input.py",
                                 "tests/test_validate.py", "tests/test_security_paths.py", "tests/test_bad_input.py",
                                 "tests/test_fallback.py"],
    "tornado_grok/ratelimit.py": ["tests/test_ratelimit_memory.py", "tests/test_ratelimit_lua.py",
                                  "tests/test_ratelimit_gateway.py"],
    "tornado_grok/loadtest/stats.py": ["tests/test_loadtest_stats.py", "tests/test_loadtest_stats_known.py",
                                       "tests/test_loadtest_parser.py", "tests/test_loadtest_metrics.py",
                                       "tests/test_loadtest_records.py"],
    "tornado_grok/loadtest/report.py": ["tests/test_loadtest_stats.py", "tests/test_loadtest_report_known.py",
                                        "tests/test_loadtest_cli.py", "tests/test_loadtest_metrics.py",
                                        "tests/test_loadtest_workload.py"],
    # Slower: each run starts gateways, the mock or redis-server.
    "tornado_grok/relay.py": ["tests/test_relay_sweep.py", "tests/test_stream_relay.py", "tests/test_relay_properties.py",
                              "tests/test_model_rewrite.py", "tests/test_sse_error_format.py",
                              "tests/test_responses_relay.py", "tests/test_disconnect.py",
                              "tests/test_hardening_backpressure.py", "tests/test_timeouts.py",
                              "tests/test_hardening_observability.py", "tests/test_loop_hostile_upstream.py",
                              "tests/test_relay_nodelay.py", "tests/test_relay_internal_error.py",
                              "tests/test_relay_flush.py", "tests/test_relay_error_body.py"],
    "tornado_grok/ratelimit_redis.py": ["tests/test_ratelimit_redis_patience.py", "tests/test_ratelimit_redis_health.py",
                                        "tests/test_ratelimit_lua.py", "tests/test_ratelimit_redis_time.py",
                                        "tests/test_ops_redis_hang.py", "tests/test_ratelimit_accounting.py"],
    "tornado_grok/health_redis.py": ["tests/test_ratelimit_redis_patience.py", "tests/test_ratelimit_redis_health.py",
                                     "tests/test_ratelimit_lua.py", "tests/test_ratelimit_redis_time.py",
                                     "tests/test_ops_redis_hang.py", "tests/test_ratelimit_accounting.py"],
    "mock_upstream/player.py": ["tests/test_mock_player_unit.py", "tests/test_mock_player.py",
                                "tests/test_mock_replay.py", "tests/test_mock_speed.py", "tests/test_mock_recordings.py"],
    "mock_upstream/faults.py": ["tests/test_mock_faults_unit.py", "tests/test_mock_faults.py",
                                "tests/test_hardening_fault_matrix.py"],
}
FAST = ["tornado_grok/sse.py", "tornado_grok/errors.py", "tornado_grok/validate.py",
        "tornado_grok/ratelimit.py", "tornado_grok/loadtest/stats.py", "tornado_grok/loadtest/report.py"]

CMP_FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BIN_FLIP = {ast.Add: ast.Sub, ast.Sub: ast.Add}
SIMPLE_STMTS = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Raise, ast.Delete)


def _skip_ids(tree) -> set:
    """Nodes never mutated: docstrings, annotations, `__slots__`/`__all__` and the like."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                skip.update(id(n) for n in ast.walk(first))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                if a.annotation is not None:
                    skip.update(id(n) for n in ast.walk(a.annotation))
            if node.returns is not None:
                skip.update(id(n) for n in ast.walk(node.returns))
        if isinstance(node, ast.AnnAssign):
            skip.update(id(n) for n in ast.walk(node.annotation))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.startswith("__") for t in node.targets):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def mutants(source: str):
    """[(index, line, description)] of every mutant of `source`; apply(source, index) builds one."""
    return [(i, line, desc) for i, (line, desc, _fn) in enumerate(_points(ast.parse(source)))]


def _points(tree):
    """Every mutation point as (line, description, function that mutates the node in place)."""
    skip = _skip_ids(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in CMP_FLIP:
                    new = CMP_FLIP[type(op)]
                    out.append((line, "%s -> %s" % (type(op).__name__, new.__name__),
                                lambda n=node, k=k, new=new: n.ops.__setitem__(k, new())))
        elif isinstance(node, ast.BinOp) and type(node.op) in BIN_FLIP:
            new = BIN_FLIP[type(node.op)]
            out.append((line, "%s -> %s" % (type(node.op).__name__, new.__name__),
                        lambda n=node, new=new: setattr(n, "op", new())))
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            out.append((line, "%s -> %s" % (type(node.op).__name__, new.__name__),
                        lambda n=node, new=new: setattr(n, "op", new())))
        elif isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                out.append((line, "%r -> %r" % (v, not v), lambda n=node: setattr(n, "value", not n.value)))
            elif isinstance(v, int):
                out.append((line, "%d -> %d" % (v, v + 1), lambda n=node, v=v: setattr(n, "value", v + 1)))
                out.append((line, "%d -> %d" % (v, v - 1), lambda n=node, v=v: setattr(n, "value", v - 1)))
        elif isinstance(node, (ast.If, ast.While, ast.IfExp)):
            out.append((line, "negate condition",
                        lambda n=node: setattr(n, "test", ast.UnaryOp(op=ast.Not(), operand=n.test))))
        elif isinstance(node, ast.Return) and node.value is not None:
            v = node.value
            if isinstance(v, ast.Constant) and isinstance(v.value, bool):
                continue  # the bool constant mutant already flips it
            if isinstance(v, ast.Constant) and v.value is None:
                continue
            out.append((line, "return None", lambda n=node: setattr(n, "value", ast.Constant(value=None))))
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.If, ast.For, ast.While,
                             ast.With, ast.Try, ast.ExceptHandler)):
            for field in ("body", "orelse", "finalbody"):
                stmts = getattr(node, field, None) or []
                for k, stmt in enumerate(stmts):
                    if id(stmt) in skip or not isinstance(stmt, SIMPLE_STMTS):
                        continue
                    if isinstance(node, ast.Module) and not isinstance(stmt, ast.Expr):
                        continue  # module-level constants are covered by the constant mutants
                    out.append((stmt.lineno, "delete statement",
                                lambda stmts=stmts, k=k: stmts.__setitem__(k, ast.Pass())))
    return out


def apply(source: str, index: int) -> str:
    tree = ast.parse(source)
    points = _points(tree)
    points[index][2]()
    return ast.unparse(ast.fix_missing_locations(tree))


def warm_up(repo: str) -> None:
    """Imports pytest, its plugins and the heavy libraries once in this process, so each mutant's
    run (a fork of it) starts in milliseconds; nothing of the project itself is imported here."""
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant must never run from a stale .pyc
    sys.dont_write_bytecode = True
    os.chdir(repo)
    sys.path.insert(0, repo)
    import importlib
    for name in ("pytest", "pytest_timeout", "pytest_tornado.plugin", "hypothesis", "tornado.web",
                 "tornado.httpclient", "requests", "openai", "redis.asyncio", "pycurl", "ujson"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from importlib.metadata import entry_points
    for ep in entry_points(group="pytest11"):  # every installed plugin (langsmith's alone takes 1.3 s)
        try:
            ep.load()
        except Exception:
            pass


def run_tests(tests: list, timeout: float, output: str = os.devnull) -> str:
    """'killed', 'survived' or 'timeout' for the current state of the repository (the cwd); pytest's
    output (with the failed tests' ids) goes to the file `output`."""
    pid = os.fork()
    if pid == 0:  # the child runs the tests and exits with pytest's status
        try:
            out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(out, 2)
            import pytest
            code = pytest.main(["-x", "-q", "-rf", "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "0",
                                "--timeout", "60",
                                *tests])
        except BaseException:
            code = 99
        os._exit(int(code))
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "timeout"  # counted as killed: a hang is noticed
        time.sleep(0.02)  # polling a child process's exit
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "survived"
    if code in (1, 2, 3, 4):  # failed tests, or an error while importing or collecting them
        return "killed"
    return "error %d" % code


def baseline(tests: list, timeout: float) -> str:
    """'' when the mapped tests pass on the unmutated module (the cwd), at the first of three tries
    (a timing test on a machine busy with the other workers can fail once); else the failures, and
    the tries that failed are printed with the failed tests' ids."""
    output = os.path.join(os.path.dirname(os.getcwd()), "baseline.txt")
    failures = []
    for _ in range(3):
        outcome = run_tests(tests, timeout, output)
        if outcome == "survived":
            return ""
        with open(output, errors="replace") as f:
            failed = [line.strip() for line in f if line.startswith(("FAILED", "ERROR"))] or [outcome]
        print("  baseline (no mutant) failed in %s: %s" % (os.getcwd(), "; ".join(failed)), flush=True)
        failures.append("; ".join(failed))
    return " | ".join(failures)


def copy_repo(src: str) -> str:
    dst = tempfile.mkdtemp(prefix="mutation-")
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", ".hypothesis", "bench")
    shutil.copytree(src, os.path.join(dst, "repo"), ignore=ignore, symlinks=True)
    return os.path.join(dst, "repo")


def measure(repos: list, module: str, timeout: float, log, only: set | None = None) -> dict:
    """Runs every mutant of `module` (or those numbered in `only`), spread over one worker per copy
    in `repos` (--jobs)."""
    repo = repos[0]
    tests = [t for t in MAP[module] if os.path.exists(os.path.join(repo, t))]
    with open(os.path.join(repo, module)) as f:
        original = f.read()
    lines = original.splitlines()
    found = [m for m in mutants(original) if only is None or m[0] in only]
    result = {"module": module, "tests": tests, "mutants": len(found), "killed": 0, "survivors": []}
    workers = []
    for k, copy in enumerate(repos):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker: its own copy of the repository, every len(repos)-th mutant
            os.close(read)
            code = 0
            try:
                os.chdir(copy)
                sys.path[0] = copy
                outcomes = _run_share(copy, module, original, found[k::len(repos)], tests, timeout)
                os.write(write, json.dumps(outcomes).encode())
            except BaseException as e:  # reported by the parent as a failed worker
                os.write(write, json.dumps({"error": repr(e)}).encode())
                code = 1
            os._exit(code)
        os.close(write)
        workers.append((pid, read))
    outcomes = []
    for pid, read in workers:
        data = b""
        while True:
            piece = os.read(read, 65536)
            if not piece:
                break
            data += piece
        os.close(read)
        os.waitpid(pid, 0)
        share = json.loads(data or b'{"error": "worker died"}')
        if isinstance(share, dict):
            raise SystemExit("%s: %s" % (module, share["error"]))
        outcomes.extend(share)
    for index, line, desc, outcome in sorted(outcomes):
        if outcome.startswith("error"):
            log("  #%d line %d %s: %s" % (index, line, desc, outcome))
        if outcome == "survived":
            src = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            result["survivors"].append({"index": index, "line": line, "mutation": desc, "source": src})
            log("  survived #%d line %d: %s   | %s" % (index, line, desc, src))
        else:
            result["killed"] += 1
    return result


def _run_share(repo: str, module: str, original: str, share: list, tests: list, timeout: float) -> list:
    """[(index, line, description, outcome)] of the mutants in `share`, run in `repo` (the cwd)."""
    path = os.path.join(repo, module)
    out = []
    try:
        with open(path, "w") as f:
            f.write(ast.unparse(ast.parse(original)))  # the unmutated module, as the mutants are written
        base = baseline(tests, timeout)
        if base:
            raise RuntimeError("the mapped tests fail without any mutant, three times: %s" % base)
        for index, line, desc in share:
            with open(path, "w") as f:
                f.write(apply(original, index))
            outcome = run_tests(tests, timeout)
            out.append((index, line, desc, outcome))
            if outcome != "killed":  # as it happens; the full list follows when the module is done
                print("  ... #%d line %d %s: %s" % (index, line, desc, outcome), flush=True)
    finally:
        with open(path, "w") as f:
            f.write(original)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="modules to mutate (default: the fast ones)")
    ap.add_argument("--all", action="store_true", help="every mapped module")
    ap.add_argument("--repo", default=ROOT, help="the checkout to measure (copied first; default: this one)")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--timeout", type=float, default=180, help="seconds per mutant's test run")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--jobs", type=int, default=1,
                    help="mutants run at once, each in its own copy (default 1: timing tests on a busy "
                         "machine can fail without a mutant, and a flaky failure would count as a kill)")
    ap.add_argument("--only", help="comma-separated mutant numbers (#N of --list) of the one module given: "
                                   "re-checks those, e.g. the survivors of an earlier run")
    args = ap.parse_args(argv)
    modules = args.modules or (list(MAP) if args.all else FAST)
    only = {int(n) for n in args.only.replace("#", "").split(",")} if args.only else None
    if only is not None and len(modules) != 1:
        ap.error("--only needs exactly one module")
    if args.list:
        for m in modules:
            with open(os.path.join(args.repo, m)) as f:
                for index, line, desc in mutants(f.read()):
                    print("%s #%d line %d: %s" % (m, index, line, desc))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a stopped run still removes its copy
    repos = [copy_repo(os.path.abspath(args.repo)) for _ in range(max(1, args.jobs))]
    repo = repos[0]
    warm_up(repo)
    results = []
    try:
        for m in modules:
            started = time.monotonic()
            print("%s (tests: %s)" % (m, ", ".join(t for t in MAP[m] if os.path.exists(os.path.join(repo, t)))),
                  flush=True)
            r = measure(repos, m, args.timeout, lambda s: print(s, flush=True), only)
            r["seconds"] = round(time.monotonic() - started)
            results.append(r)
            print("  %d of %d killed (%.0f%%) in %d s" % (r["killed"], r["mutants"],
                                                          100.0 * r["killed"] / max(1, r["mutants"]), r["seconds"]),
                  flush=True)
    finally:
        for r in repos:
            shutil.rmtree(os.path.dirname(r), ignore_errors=True)
    print("\n| module | killed | mutants | score |\n|---|---|---|---|")
    for r in results:
        print("| %s | %d | %d | %.0f%% |" % (r["module"], r["killed"], r["mutants"],
                                             100.0 * r["killed"] / max(1, r["mutants"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
