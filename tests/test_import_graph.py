"""The project's import graph has no circle: every module of tornado_grok and mock_upstream, with the
imports inside functions counted too (a lazy import still ties two modules together)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tornado_grok", "mock_upstream")


def modules() -> dict:
    """{dotted module name: its path} for every module of the packages."""
    found = {}
    for package in PACKAGES:
        for folder, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: str, known: dict) -> set:
    """The project modules `name` imports (a package's __init__ is not an edge: it imports nothing here)."""
    is_package = path.endswith("__init__.py")
    base = name.split(".") if is_package else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join(parent + ([node.module] if node.module else []))
            targets = [module] + [module + "." + alias.name for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name and known[t].endswith(".py")
                   and not known[t].endswith("__init__.py"))
    return out


def find_cycle(graph: dict):
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_circle():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert graph["tornado_grok.cli"] and graph["tornado_grok.loadtest.cli"]  # the walk sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_check_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
