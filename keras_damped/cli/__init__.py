"""The `keras-damped` command: one module per command, each thin (parse,
build the config, call the library, print); the options come from the config
dataclasses (`_configs.py`, `_options.py`).

One vocabulary across the commands: `--model` (repeat or comma-separate),
`--out` (the folder a command writes), `--seed`/`--seeds` (training),
`--eval-seed` and `--eval-batch-size` (the evaluation's). The names of
0.1.0 that changed (`DEPRECATED`) keep working until 0.2.0, each with a
one-line notice.
"""

import argparse
import logging
import sys

from keras_damped.cli import analysis
from keras_damped.cli import evaluate
from keras_damped.cli import models
from keras_damped.cli import study
from keras_damped.cli import train
from keras_damped.cli._options import REMOVED_IN
from keras_damped.cli._options import parse_severities  # noqa: F401 (public)

COMMANDS = (models, train, evaluate, study, analysis)
# {command: {old flag: new flag}}
DEPRECATED = {
    "train": {"--run-dir": "--out"},
    "evaluate": {"--batch-size": "--eval-batch-size", "--seed": "--eval-seed"},
    "study": {"--models": "--model"},
    "landscape": {"--seed": "--eval-seed"},
    "analyze": {"--seed": "--eval-seed"},
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-damped",
        description="Damped (interpolated) residual networks for Keras 3.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def modernize(argv, err=None):
    """`argv` with the deprecated flag names of its command replaced by
    today's, one notice per name used."""
    argv, err = list(argv), err or sys.stderr
    command = next((a for a in argv if not a.startswith("-")), None)
    renames = DEPRECATED.get(command, {})
    told = set()
    for i, token in enumerate(argv):
        if token == "--":
            break
        old, sep, value = token.partition("=")
        if old in renames:
            argv[i] = renames[old] + sep + value
            if old not in told:
                told.add(old)
                print(
                    f"keras-damped {command}: {old} is deprecated and will be "
                    f"removed in {REMOVED_IN}: use {renames[old]}",
                    file=err,
                )
    return argv


def main(argv=None):
    from keras_damped._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    argv = modernize(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stdout, format="%(message)s")
    logging.getLogger("keras_damped").setLevel(logging.INFO)
    from keras_damped.data import DatasetUnavailableError
    from keras_damped.study.runner import StudyRunFailedError
    from keras_damped.training import RunDirExistsError
    from keras_damped.training import TrainingDivergedError

    try:
        args.run(args)
    except (
        ValueError,
        DatasetUnavailableError,
        RunDirExistsError,
        FileExistsError,
    ) as error:
        print(f"keras-damped {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (TrainingDivergedError, StudyRunFailedError) as error:
        print(f"keras-damped {args.command}: {error}", file=sys.stderr)
        return 3
    return 0
