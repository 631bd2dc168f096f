"""The reference documents against the code: what the code defines, its document lists, and no more.

- every setting of config.Config is a row of docs/configuration.md and a commented line of
  conf/gateway.toml whose value is the default;
- every error code the gateway can send (read from the source with ast: each GatewayError(...)
  and the helpers that build one, their call sites resolved) is a row of docs/api.md's error table,
  with its status;
- every route of the application make_app builds (method and path) is a row of docs/api.md's
  endpoint table, and a path with those methods in docs/openapi.yaml;
- every metric of metrics.py is a row of docs/operations.md's metrics table.

Pure Python: the sources and documents are read, and one Application is built (no socket is opened).
"""

import ast
import asyncio
import dataclasses
import os
import re
import tomllib

import pytest

from tornado_grok import config as cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tornado_grok")

# Config fields filled at load time, not settings (config.py says so).
NOT_SETTINGS = {"aliases", "mock", "metrics_dir"}
# Settings conf/gateway.toml does not offer, and why: the upstream key is read only from XAI_API_KEY.
NOT_IN_FILE = {"upstream_key"}
# Settings whose default is a path under the checkout's (or working directory's) root.
PATH_SETTINGS = {"keys_file", "aliases_file"}


def read(*parts) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def section(text: str, heading: str) -> str:
    """The text under the markdown heading `heading` (any level), up to the next heading of its level."""
    match = re.search(r"^(#+) %s\s*$" % re.escape(heading), text, re.M)
    assert match, "no heading %r" % heading
    level = len(match.group(1))
    end = re.search(r"^#{1,%d} " % level, text[match.end():], re.M)
    return text[match.end():match.end() + end.start()] if end else text[match.end():]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in `text`, each table's header row left out."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        if re.fullmatch(r"\|[\s|:-]+\|", line):
            rows.pop()  # the header above a separator
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def first_cell_names(text: str) -> list[str]:
    """The `name` of each table row whose first cell is one backticked name."""
    names = []
    for row in table_rows(text):
        match = re.fullmatch(r"`([^`]+)`", row[0])
        if match:
            names.append(match.group(1))
    return names


# -- settings --------------------------------------------------------------------------------------

def settings() -> dict:
    """{name: default} of every setting of Config."""
    return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(cfg.Config) if f.name not in NOT_SETTINGS}


# An array of tables, offered commented as `# [[name]]`: its value is not on that line.
TABLES = object()


def commented_settings() -> dict:
    """{name: value} of every `# name = value` line of conf/gateway.toml (TABLES for `# [[name]]`)."""
    found, in_table = {}, False
    for line in read("conf", "gateway.toml").splitlines():
        if in_table and line.startswith("#"):
            continue  # the fields of an offered `# [[name]]` table, up to the next blank line
        in_table = False
        match = re.match(r"#\s*([a-z_]+)\s*=\s*(.*)$", line) or re.match(r"#\s*\[\[([a-z_]+)\]\]", line)
        if match:
            in_table = match.lastindex == 1
            name = match.group(1)
            assert name not in found, "conf/gateway.toml offers %s twice" % name
            found[name] = tomllib.loads("%s = %s" % (name, match.group(2)))[name] if match.lastindex == 2 else TABLES
    return found


def test_every_setting_is_documented_in_configuration_md():
    doc = first_cell_names(section(read("docs", "configuration.md"), "Settings"))
    assert len(doc) == len(set(doc)), "a setting has two rows: %s" % sorted(n for n in doc if doc.count(n) > 1)
    assert sorted(set(settings()) - set(doc)) == [], "settings without a row in docs/configuration.md"
    assert sorted(set(doc) - set(settings())) == [], "rows of docs/configuration.md that are no setting"


def test_every_setting_is_offered_in_gateway_toml_with_its_default():
    offered = commented_settings()
    expected = set(settings()) - NOT_IN_FILE
    assert sorted(expected - set(offered)) == [], "settings conf/gateway.toml does not offer (commented)"
    assert sorted(set(offered) - expected) == [], "lines of conf/gateway.toml that are no setting"
    defaults = settings()
    for name, value in offered.items():
        if value is TABLES:
            continue
        value = cfg._coerce(name, value)
        if name in PATH_SETTINGS:
            value = os.path.join(cfg.ROOT, value)
        assert value == defaults[name], "conf/gateway.toml shows %s = %r, the default is %r" % (
            name, value, defaults[name])
    assert "XAI_API_KEY" in read("conf", "gateway.toml")


# -- error codes -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Raise:
    """One GatewayError(...) in the source (or a subclass's super().__init__(...)): where, the
    function and class it is in, and its status and code as expressions."""

    path: str
    line: int
    function: ast.FunctionDef | None
    cls: ast.ClassDef | None
    status: ast.expr | None
    code: ast.expr | None


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _is_super_init(call: ast.Call) -> bool:
    func = call.func
    return isinstance(func, ast.Attribute) and func.attr == "__init__" and isinstance(func.value, ast.Call) \
        and isinstance(func.value.func, ast.Name) and func.value.func.id == "super"


class Source:
    """The package's modules, read with ast: every call with the function and class it is in, so that
    a code built from a parameter can be followed to what the callers pass (a few levels deep)."""

    DEPTH = 4

    def __init__(self, package: str):
        self.trees = {}
        for folder, _, files in os.walk(package):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as f:
                        self.trees[os.path.relpath(path, ROOT)] = ast.parse(f.read(), path)
        self.calls = []  # (call, path, function, class)
        for path, tree in self.trees.items():
            self._index(tree, path, None, None)
        classes = [n for tree in self.trees.values() for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        self.subclasses = {"GatewayError"}
        for _ in range(len(classes)):  # the classes derived from GatewayError, however indirectly
            grown = self.subclasses | {c.name for c in classes if any(
                (b.id if isinstance(b, ast.Name) else getattr(b, "attr", None)) in self.subclasses
                for b in c.bases)}
            if grown == self.subclasses:
                break
            self.subclasses = grown

    def _index(self, node, path, function, cls):
        for child in ast.iter_child_nodes(node):
            inner, inner_cls = function, cls
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner, inner_cls = child, cls if isinstance(node, ast.ClassDef) else None  # a method, or not
            elif isinstance(child, ast.ClassDef):
                inner, inner_cls = None, child
            if isinstance(child, ast.Call):
                self.calls.append((child, path, function, cls))
            self._index(child, path, inner, inner_cls)

    def raises(self) -> list[Raise]:
        found = []
        for call, path, function, cls in self.calls:
            if _call_name(call) == "GatewayError" or (
                    _is_super_init(call) and cls is not None and cls.name in self.subclasses - {"GatewayError"}):
                kw = {k.arg: k.value for k in call.keywords}
                status = call.args[0] if call.args else kw.get("status")
                code = call.args[2] if len(call.args) > 2 else kw.get("code")
                found.append(Raise(path, call.lineno, function, cls, status, code))
        return found

    @staticmethod
    def params(function, cls) -> dict:
        """{parameter: (position in a call, default expression or None)}; a method's self is not passed."""
        args = function.args.posonlyargs + function.args.args
        defaults = [None] * (len(args) - len(function.args.defaults)) + list(function.args.defaults)
        skipped = 1 if cls is not None else 0
        params = {a.arg: (i - skipped, d) for i, (a, d) in enumerate(zip(args, defaults))}
        for a, d in zip(function.args.kwonlyargs, function.args.kw_defaults):
            params[a.arg] = (None, d)
        return params

    def sites(self, function, cls, path) -> list:
        """The calls of a function: a module-level one by its name (in its module or where it is
        imported by name) or as `module.name`; a class's __init__ by the class's name; a method as
        `self.name(...)` in its module."""
        module = os.path.splitext(os.path.basename(path))[0]
        name = cls.name if cls is not None and function.name == "__init__" else function.name
        method = cls is not None and function.name != "__init__"
        found = []
        for call, other, caller, caller_cls in self.calls:
            func = call.func
            if method:
                hit = other == path and isinstance(func, ast.Attribute) and func.attr == name and \
                    isinstance(func.value, ast.Name) and func.value.id == "self"
            elif isinstance(func, ast.Name):
                hit = func.id == name and (other == path or any(
                    isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[-1] == module
                    and any(a.name == name for a in n.names) for n in ast.walk(self.trees[other])))
            else:
                hit = isinstance(func, ast.Attribute) and func.attr == name and \
                    isinstance(func.value, ast.Name) and func.value.id == module
            if hit:
                found.append((call, other, caller, caller_cls))
        return found

    def values(self, expr, function, cls, path, depth: int) -> list:
        """What an expression passed as an argument can be: constants (both of `a if x else b`), a
        parameter of the calling function followed to its own callers, else None (not known)."""
        if isinstance(expr, ast.IfExp):
            return self.values(expr.body, function, cls, path, depth) + \
                self.values(expr.orelse, function, cls, path, depth)
        if isinstance(expr, ast.Constant):
            return [expr.value]
        if isinstance(expr, ast.Name) and function is not None and depth < self.DEPTH and \
                expr.id in self.params(function, cls):
            return self.param_values(function, cls, path, expr.id, depth + 1)
        return [None]

    def param_values(self, function, cls, path, name, depth: int) -> list:
        """Every value the parameter `name` of `function` gets from its callers."""
        position, default = self.params(function, cls)[name]
        found = []
        for call, other, caller, caller_cls in self.sites(function, cls, path):
            kw = {k.arg: k.value for k in call.keywords}
            arg = kw.get(name)
            if arg is None and position is not None and 0 <= position < len(call.args):
                arg = call.args[position]
            if arg is None:
                found += self.values(default, None, None, path, depth) if default is not None else [None]
            else:
                found += self.values(arg, caller, caller_cls, other, depth)
        return list(dict.fromkeys(found)) or [None]


def _render(expr, env: dict):
    """A str/int constant, or for a code built from a parameter a template such as
    `upstream_<#status>` (an unknown number) or `timeout_<which>` (an unknown word)."""
    if isinstance(expr, ast.Constant):
        return expr.value
    if isinstance(expr, ast.Name) and expr.id in env:
        value = env[expr.id]
        return "<%s>" % expr.id if value is None else value
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        left, right = _render(expr.left, env), _render(expr.right, env)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mod) and isinstance(expr.left, ast.Constant):
        values = iter([_render(v, env) for v in (expr.right.elts if isinstance(expr.right, ast.Tuple)
                                                  else [expr.right])])

        def one(spec):
            value = next(values)
            if isinstance(value, str) and value.startswith("<"):  # unknown: <#name> a number, <name> a word
                return "<#%s>" % value[1:-1] if spec.group(0) == "%d" else value
            return spec.group(0) % value
        return re.sub(r"%[sd]", one, expr.left.value)
    return None


def _render_all(expr, env: dict) -> list:
    """_render of each value a conditional expression (`a if x else b`) can take."""
    if isinstance(expr, ast.IfExp):
        return _render_all(expr.body, env) + _render_all(expr.orelse, env)
    return [_render(expr, env)]


def source_codes(package: str = PACKAGE) -> dict:
    """{code or template: {status, ...}} of every error the gateway can send; a status that is not a
    constant is None. A template's <#name> stands for a number, <name> for a word."""
    source = Source(package)
    codes: dict = {}
    missing = []
    for r in source.raises():
        if r.code is None or (isinstance(r.code, ast.Constant) and r.code.value is None):
            missing.append("%s:%d" % (r.path, r.line))
            continue
        used = {n.id for e in (r.code, r.status) if e is not None for n in ast.walk(e) if isinstance(n, ast.Name)}
        params = sorted(used & set(source.params(r.function, r.cls))) if r.function is not None else []
        envs = [{}]
        for name in params:  # each combination of the values the callers pass
            values = source.param_values(r.function, r.cls, r.path, name, 1)
            envs = [dict(env, **{name: value}) for env in envs for value in values]
        for env in envs:
            status = _render(r.status, env) if r.status is not None else None
            for code in _render_all(r.code, env):
                assert isinstance(code, str), "%s:%d: cannot read the error code of this GatewayError" % (
                    r.path, r.line)
                codes.setdefault(code, set()).add(status if isinstance(status, int) else None)
    assert missing == [], "GatewayErrors without a code (a client would see \"code\": null): %s" % missing
    return codes


def _template_pattern(template: str) -> re.Pattern:
    parts = re.split(r"(<#?\w+>)", template)
    return re.compile("".join(
        r"\d+" if p.startswith("<#") else r"[a-z0-9_]+" if p.startswith("<") else re.escape(p)
        for p in parts) + r"\Z")


def documented_codes() -> dict:
    """{code: status cell} of docs/api.md's error table (a template written `upstream_<status>`)."""
    rows = {}
    for row in table_rows(section(read("docs", "api.md"), "Error codes")):
        match = re.fullmatch(r"`([a-z0-9_<>]+)`", row[0])
        if match:
            assert match.group(1) not in rows, "docs/api.md lists %s twice" % match.group(1)
            rows[match.group(1)] = row[1]
    return rows


def test_the_error_codes_are_read_from_the_source():
    """The reading itself: codes built by helpers and from parameters are found, as templates."""
    codes = source_codes()
    assert codes["invalid_json"] == {400}
    assert codes["missing_field"] == {400} and codes["invalid_field"] == {400}  # validate.bad
    assert codes["invalid_api_key"] == {401}  # auth._unauthorized
    assert codes["stream_cancelled"] == {410}  # stored_stream.gone
    assert codes["stream_not_resumable"] == {410}  # stored_stream.not_resumable
    assert codes["upstream_<#status>"] == {None, 502}  # errors.from_upstream: a 4xx's own status, or 502
    assert "timeout_<which>" in codes  # errors.timeout, called with the sweep's verdict
    assert codes["bad_request"] == {None}  # a tornado HTTPError's own status


def test_every_error_code_is_in_the_api_error_table_with_its_status():
    codes = source_codes()
    doc = documented_codes()
    shown = {code.replace("<#", "<"): code for code in codes}  # as docs/api.md writes a template
    patterns = [_template_pattern(code) for code in codes if "<" in code]
    for code in codes:
        assert "<" not in code or re.search(r"[a-z]_<", code), "%s: a code that is only a parameter" % code
    undocumented = [name for name, code in shown.items() if name not in doc and not (
        "<" in code and any(_template_pattern(code).match(d) for d in doc))]
    assert sorted(undocumented) == [], "error codes the gateway sends that docs/api.md does not list"
    unknown = [d for d in doc if d not in shown and not any(p.match(d) for p in patterns)]
    assert sorted(unknown) == [], "codes docs/api.md lists that the gateway never sends"
    for name, code in shown.items():
        rows = [name] if name in doc else [d for d in doc if _template_pattern(code).match(d)]
        for status in codes[code] - {None}:
            for row in rows:
                assert str(status) in re.findall(r"\d{3}", doc[row]), \
                    "docs/api.md: %s is sent with %d, its row says %r" % (row, status, doc[row])


# -- routes ----------------------------------------------------------------------------------------

def app_routes(tmp_path) -> set:
    """{(method, path)} of the Application make_app builds, ids written {}."""
    from tornado import web

    from tornado_grok.app import make_app

    async def build():
        environ = {"TG_CONFIG": str(tmp_path / "none.toml"), "TG_KEYS_FILE": str(tmp_path / "keys.json")}
        app = make_app(cfg.load(environ=environ))
        try:
            return list(app.wildcard_router.rules)
        finally:
            await app.settings["gateway"].close()

    routes = set()
    for rule in asyncio.run(build()):
        path = rule.matcher._path  # tornado's own reversal of the pattern: one %s per group
        assert path is not None, "a route tornado cannot reverse: %r" % rule.matcher.regex.pattern
        rows = (rule.target_kwargs or {}).get("rows")
        if rows is not None:  # the route table's handler: the methods are the rows'
            methods = set(rows)
        else:
            methods = {m for m in rule.target.SUPPORTED_METHODS if m != "OPTIONS"
                       and getattr(rule.target, m.lower()) is not getattr(web.RequestHandler, m.lower())}
        assert methods, "a route that answers no method: %s" % path
        routes |= {(m, path.replace("%s", "{}")) for m in methods}
    return routes


def documented_routes() -> set:
    routes = set()
    for row in table_rows(section(read("docs", "api.md"), "Endpoints")):
        method, path = row[0], row[1] if len(row) > 1 else ""
        match = re.fullmatch(r"`(/[^`]*)`", path)
        if method.isupper() and match:
            routes.add((method, re.sub(r"\{[^}]*\}", "{}", match.group(1))))
    return routes


def test_every_route_is_in_the_api_endpoint_table(tmp_path):
    routes = app_routes(tmp_path)
    assert ("GET", "/api/v1/chat/deferred-completion/{}") in routes  # a row of routes.py
    doc = documented_routes()
    assert sorted(routes - doc) == [], "routes docs/api.md's endpoint table does not list"
    assert sorted(doc - routes) == [], "rows of docs/api.md's endpoint table that are no route"


def test_openapi_has_every_route_with_its_methods(tmp_path):
    import yaml

    spec = yaml.safe_load(read("docs", "openapi.yaml"))
    described = {(method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
                 for path, item in spec["paths"].items() for method in item
                 if method in ("get", "post", "put", "patch", "delete")}
    assert sorted(described ^ app_routes(tmp_path)) == []


# -- metrics ---------------------------------------------------------------------------------------

_COLLECTORS = {"Counter": "_total", "CounterMetricFamily": "_total", "Histogram": "", "Gauge": "", "_gauge": ""}


def source_metrics() -> set:
    """The exposed name of every metric metrics.py defines (a counter's with its _total)."""
    with open(os.path.join(PACKAGE, "metrics.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in _COLLECTORS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value + _COLLECTORS[_call_name(node)])
    return names


def test_every_metric_is_in_the_operations_metrics_table():
    metrics = source_metrics()
    assert {"tornado_grok_requests_total", "tornado_grok_open_streams",
            "tornado_grok_time_to_first_token_seconds", "tornado_grok_log_lines_dropped_total"} <= metrics
    doc = set(first_cell_names(section(read("docs", "operations.md"), "Metrics: `GET /metrics`")))
    assert sorted(metrics - doc) == [], "metrics docs/operations.md does not list"
    assert sorted(doc - metrics) == [], "rows of docs/operations.md's metrics table that are no metric"


@pytest.mark.parametrize("name", ["api.md", "configuration.md", "operations.md", "performance.md", "ratelimits.md"])
def test_the_reference_documents_link_to_each_other(name):
    """Each reference document exists, and every docs/*.md link in it names a document that exists."""
    text = read("docs", name)
    for target in re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]+)?\)", text):
        assert os.path.exists(os.path.join(ROOT, "docs", target)), "%s links to a missing %s" % (name, target)
