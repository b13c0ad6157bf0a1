"""The package's shape: functions short enough to read at once."""

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
