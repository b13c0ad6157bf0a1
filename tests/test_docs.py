"""The generated reference pages match the code they are generated from."""

import argparse
import importlib.util
import pathlib

from keras_damped.cli import build_parser

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_up_to_date_and_names_every_flag(tmp_path, monkeypatch):
    generate = _generator()
    assert generate.main(["--check"]) == 0, "run python docs/generate.py"
    page = (DOCS / "cli.md").read_text()
    (commands,) = [
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ]
    for name, sub in commands.choices.items():
        section = page.split(f"## `keras-damped {name}`")[1].split("\n## ")[0]
        for action in sub._actions:
            if action.help is argparse.SUPPRESS or "-h" in action.option_strings:
                continue
            for flag in action.option_strings:
                assert f"`{flag}`" in section, (name, flag)
            if isinstance(action.default, (int, float)) and action.nargs != 0:
                row = next(
                    line
                    for line in section.splitlines()
                    if line.startswith(f"| `{action.option_strings[0]}`")
                )
                assert f"`{action.default}`" in row, (name, row)
    # A page that differs from the parser is reported, not passed.
    monkeypatch.setattr(generate, "DOCS", tmp_path)
    (tmp_path / "cli.md").write_text(page.replace("`--epochs`", "`--epoch`"))
    assert generate.main(["--check"]) == 1


def test_the_readme_lists_every_renamed_flag():
    from keras_damped.cli import DEPRECATED

    readme = (DOCS.parent / "README.md").read_text()
    for command, renames in DEPRECATED.items():
        for old, new in renames.items():
            assert f"| `{command}` | `{old}` | `{new}` |" in readme
