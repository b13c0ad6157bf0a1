"""The generated reference pages match the code they are generated from."""

import argparse
import importlib.util
import pathlib
import re

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
    monkeypatch.setattr(generate, "PAGES", {"cli.md": generate.cli_reference})
    (tmp_path / "cli.md").write_text(page.replace("`--epochs`", "`--epoch`"))
    assert generate.main(["--check"]) == 1


def test_the_readme_lists_every_renamed_flag():
    from keras_damped.cli import DEPRECATED

    readme = (DOCS.parent / "README.md").read_text()
    for command, renames in DEPRECATED.items():
        for old, new in renames.items():
            assert f"| `{command}` | `{old}` | `{new}` |" in readme


# --- README and docs/: short, linked, and their tables true to their files --

REPO = DOCS.parent
GENERATED = {"cli.md", "presets.md"}
SOURCE = re.compile(r"<!-- source: (\S+?)(?:#(.+?))? -->")
NO_SOURCE = re.compile(r"<!-- no source: .+ -->")


def _pages():
    """README.md and every docs/ page written by hand."""
    return [REPO / "README.md"] + [
        p for p in sorted(DOCS.glob("*.md")) if p.name not in GENERATED
    ]


def _tables(text):
    """`(marker line or None, header cells, [row cells])` of
    every Markdown table in `text`; the marker is the nearest non-blank
    line above the table when it is an HTML comment."""
    lines = text.splitlines()
    found = []
    i = 0
    while i < len(lines):
        if (
            lines[i].lstrip().startswith("|")
            and i + 1 < len(lines)
            and set(lines[i + 1].strip()) <= set("|-: ")
            and "---" in lines[i + 1]
        ):
            above = [line for line in lines[:i] if line.strip()]
            marker = (
                above[-1].strip()
                if above and above[-1].strip().startswith("<!--")
                else None
            )
            header = _cells(lines[i])
            body = []
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                body.append(_cells(lines[j]))
                j += 1
            found.append((marker, header, body))
            i = j
        else:
            i += 1
    return found


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _section(text, heading):
    """The part of `text` under the heading that reads `heading`, up to the
    next heading of the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip("#").strip() == heading and line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body = []
            for later in lines[i + 1 :]:
                if (
                    later.startswith("#")
                    and len(later) - len(later.lstrip("#")) <= level
                ):
                    break
                body.append(later)
            return "\n".join(body)
    raise AssertionError(f"no heading {heading!r}")


def _column_index(ours, theirs):
    """For each of our columns, the position of the same-named column in
    theirs (case-insensitive; a name used twice, as "img/s", matched in
    order), or None when one is missing."""
    theirs = [c.lower() for c in theirs]
    index, seen = [], {}
    for name in (c.lower() for c in ours):
        places = [k for k, c in enumerate(theirs) if c == name]
        n = seen.get(name, 0)
        if n >= len(places):
            return None
        index.append(places[n])
        seen[name] = n + 1
    return index


def test_every_table_names_its_source_and_matches_it():
    """Each table in README and docs/ says where its numbers come from: a
    results file (`<!-- source: PATH#heading -->`, every cell then equal to
    that file's cell in the same row and column, columns matched by name)
    or nothing to check against (`<!-- no source: why -->`)."""
    checked = 0
    for page in _pages():
        for marker, header, rows in _tables(page.read_text()):
            where = f"{page.name}: table {header[:3]}"
            assert marker and (SOURCE.match(marker) or NO_SOURCE.match(marker)), (
                f"{where} has no <!-- source: ... --> or <!-- no source: ... --> line"
            )
            match = SOURCE.match(marker)
            if not match:
                continue
            path, heading = match.groups()
            source = (REPO / path).read_text()
            if heading:
                source = _section(source, heading)
            tables = [
                (h, r)
                for _, h, r in _tables(source)
                if {c.lower() for c in header} <= {c.lower() for c in h}
            ]
            assert tables, f"{where}: no table in {path} has columns {header}"
            ok = False
            for their_header, their_rows in tables:
                index = _column_index(header, their_header)
                # Every row of ours is one of theirs, read in our columns.
                theirs = (
                    {tuple(r[k] for k in index) for r in their_rows} if index else set()
                )
                if all(tuple(cells) in theirs for cells in rows):
                    ok = True
            assert ok, f"{where}: its cells differ from {path}"
            checked += 1
    assert checked >= 10


def test_the_readme_is_short_and_every_link_resolves():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    for page in DOCS.glob("*.md"):
        if page.name != "generate.py":
            assert f"](docs/{page.name})" in readme, f"README does not link {page.name}"
    for page in _pages() + [DOCS / name for name in GENERATED]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links {target}"


def test_the_readme_python_example_runs():
    """The README's Python block, run as written."""
    readme = (REPO / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["damped"].name.startswith("damped_")
    assert set(namespace["damping_values"](namespace["model"])) == {
        f"stage{s}_block{b}" for s in (1, 2, 3) for b in (2, 3)
    }
