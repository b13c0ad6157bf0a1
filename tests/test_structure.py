"""The package's shape: functions short enough to read at once, and imports
that point one way."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_damped"
LONGEST = 80


def test_no_function_is_over_80_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines})")
    assert not long, f"functions over {LONGEST} lines: {long}"
    assert len(list(PACKAGE.rglob("*.py"))) > 40  # the walk found the package


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_import_module_call(node):
    """`importlib.import_module("a.literal.name")`, an import all the same."""
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    )


def _import_graph():
    """Module -> the keras_damped modules it imports, at the top or inside a
    function alike (a lazy import still closes a circle when it runs).
    `from package import name` points at the submodule `name` where there is
    one, else at the package itself."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if _is_import_module_call(node):
                targets.add(node.args[0].value)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert not node.level, (
                    f"{name}: relative import (the package uses absolute ones)"
                )
                base = node.module
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = sorted(t for t in targets if t in modules and t != name)
    return graph


def _find_cycle(graph):
    state = {}
    for start in graph:
        if start in state:
            continue
        stack = [(start, iter(graph[start]))]
        path = [start]
        state[start] = "open"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = "done"
                stack.pop()
                path.pop()
            elif state.get(child) == "open":
                return path[path.index(child) :] + [child]
            elif child not in state:
                state[child] = "open"
                stack.append((child, iter(graph[child])))
                path.append(child)
    return None


def test_the_import_graph_has_no_cycle():
    graph = _import_graph()
    assert "keras_damped.robustness.attacks" in graph["keras_damped.robustness"]
    assert (
        "keras_damped.robustness.registry" in graph["keras_damped.robustness.attacks"]
    )
    assert _find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
