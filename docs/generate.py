"""Writes the reference pages that are generated from the code, so they
cannot drift from it: docs/cli.md from `keras_damped.cli.build_parser()`
(every command, flag, default and choice) and docs/presets.md from the
model registry (every preset, built: its parameters, damped blocks and the
range its damping starts from).

    python docs/generate.py          # rewrite the pages
    python docs/generate.py --check  # exit 1 if a page is out of date (CI)

tests/test_docs.py runs the check with the test suite.
"""

import argparse
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(action):
    if action.nargs == 0:  # a switch (store_true and the like)
        return "switch"
    if action.default in (None, argparse.SUPPRESS) or action.required:
        return "required" if action.required else ""
    if action.default == "":
        return '""'
    return f"`{action.default}`"


def _rows(parser):
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if action.help is argparse.SUPPRESS or "-h" in action.option_strings:
            continue
        flags = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        # argparse's own expansion of the help (%(default)s, %%).
        meaning = formatter._expand_help(action) if action.help else ""
        if action.choices:
            meaning += f" (one of: {', '.join(str(c) for c in action.choices)})"
        rows.append(f"| {flags} | {_default(action)} | {_cell(meaning)} |")
    return rows


def cli_reference():
    """docs/cli.md's text."""
    from keras_damped.cli import build_parser

    parser = build_parser()
    (commands,) = [
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ]
    summaries = {a.dest: a.help for a in commands._choices_actions}
    lines = [
        "# Command-line reference",
        "",
        "Generated from `keras_damped.cli.build_parser()` by `python "
        "docs/generate.py`; the test suite fails when this page and the parser "
        "differ. `keras-damped <command> --help` prints the same.",
        "",
    ]
    for name, sub in commands.choices.items():
        lines += [f"## `keras-damped {name}`", ""]
        text = (sub.description or summaries.get(name) or "").replace("%%", "%")
        if text:
            lines += [_cell(text), ""]
        lines += ["| flag | default | meaning |", "|---|---|---|", *_rows(sub), ""]
    return "\n".join(lines + _renames())


def _renames():
    """The flag names of 0.1.0 that changed, still accepted for a while."""
    from keras_damped.cli import DEPRECATED
    from keras_damped.cli._options import REMOVED_IN

    lines = [
        "## Renamed flags",
        "",
        "One name per idea in every command. The old names still work, each "
        f"with a one-line notice, until {REMOVED_IN}.",
        "",
        "| command | old | new |",
        "|---|---|---|",
    ]
    for command, renames in DEPRECATED.items():
        for old, new in renames.items():
            lines.append(f"| `{command}` | `{old}` | `{new}` |")
    return [*lines, ""]


def presets():
    """docs/presets.md's text: `keras-damped models`' table."""
    from keras_damped.models.registry import models_table

    return "\n".join(
        [
            "# Presets",
            "",
            "Every registered model, built (`create_model(name)`, CIFAR-sized "
            "input): generated from the registry by `python docs/generate.py`, "
            "the same table as `keras-damped models`; the test suite fails when "
            "this page and the registry differ. Trainable parameters; `damped "
            "blocks`: blocks with a damped merge (every identity-shortcut block "
            "but the first of each stage); `initial lambda`: what lambda is "
            "drawn from (In: relu(1 - k), k ~ U(0.75, 0.80); lambda-In: relu(k), "
            "k ~ U(0.20, 0.25); the depth-164 presets use the reference's wider "
            "ranges), fixed for the `cnn*` presets (lambda = 1) and 0 for plain "
            "ResNets.",
            "",
            models_table(["*"]),
            "",
        ]
    )


PAGES = {"cli.md": cli_reference, "presets.md": presets}


def main(argv=None):
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for name, build in PAGES.items():
        path, text = DOCS / name, build()
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"Out of date: {stale}; run python docs/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
