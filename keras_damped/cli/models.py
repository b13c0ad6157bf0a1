"""`keras-damped models`: the registered models with their parameter counts."""

from keras_damped.cli._options import HELP_FORMAT


def add_parser(sub):
    parser = sub.add_parser(
        "models",
        formatter_class=HELP_FORMAT,
        help="list the registered models with their parameter counts",
    )
    parser.add_argument(
        "--pattern",
        action="append",
        default=None,
        help="shell-style name pattern, repeatable (default: all models)",
    )
    parser.set_defaults(run=run)


def run(args):
    from keras_damped.models.registry import models_table

    print(models_table(args.pattern or ["*"]))
