"""What the commands share: options built from the config dataclasses, the
parsers of their text, the renamed and the deprecated flags.

An option's default and help are those of its config field
(`keras_damped._fields.setting`); list and radius options show the default
in the units the command line takes (radii in 1/255).
"""

import argparse
import dataclasses

from keras_damped._fields import default_of
from keras_damped._fields import help_of

# `--help` shows every option's default.
HELP_FORMAT = argparse.ArgumentDefaultsHelpFormatter
# The flag names of 0.1.0 that changed (`keras_damped.cli.DEPRECATED`) keep
# working, each with a one-line notice, until:
REMOVED_IN = "0.2.0"


def add_setting(
    parser, config, name, flag=None, *, show=None, help=None, dest=None, **kwargs
):
    """`--name` (or `flag`) for field `name` of `config`, a config dataclass
    or an instance (whose value is then the default), stored as `dest`
    (default: `name`). `show` writes a default in command-line text, which
    the command parses like any value."""
    if isinstance(config, type):
        default = default_of(config, name)
        config_class = config
    else:
        default = getattr(config, name)
        config_class = type(config)
    if default is dataclasses.MISSING:  # a required setting
        default = None
    if show is not None and default is not None:
        default = show(default)
    default = kwargs.pop("default", default)
    parser.add_argument(
        flag or "--" + name.replace("_", "-"),
        dest=dest or name,
        default=default,
        help=help if help is not None else help_of(config_class, name),
        **kwargs,
    )


def words(values):
    """A list as the command line writes it ('none' when empty)."""
    return ",".join(str(v) for v in values) if values else "none"


def severity_text(values):
    """Severities as the command line writes them: 1-5 for a full range."""
    values = sorted(values)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return words(values)


def in_255ths(values):
    """Radii in pixel units as the command line writes them (1/255 units)."""
    return ",".join(f"{round(v * 255, 6):g}" for v in values)


class _RenamedFlag(argparse.Action):
    """A flag renamed before 0.1: using it stops with the new name."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed: use {self.const}.")


def renamed(parser, old, new):
    parser.add_argument(
        old,
        action=_RenamedFlag,
        nargs="?",
        const=new,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def positive_int(flag):
    """An argparse type: `keras_damped.validators.positive_int` of the text."""
    from keras_damped.validators import positive_int as check

    def parse(text):
        try:
            return check(flag, int(text))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a positive integer. Received: {text!r}"
            ) from None

    return parse


def split(text):
    """'a,b' as ['a', 'b']; 'none' as []."""
    return (
        []
        if text.strip().lower() == "none"
        else [t.strip() for t in text.split(",") if t.strip()]
    )


def split_all(values):
    """Repeated options, each possibly comma-separated, as one list."""
    return [name for value in values or [] for name in split(value)]


def number_list(text, what):
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(
                f"{what} must be comma-separated numbers. Received: {text!r}"
            ) from None
    return values


def int_list(text, what):
    values = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            values.append(int(part))
        except ValueError:
            raise ValueError(
                f"{what} must be comma-separated integers. Received: {text!r}"
            ) from None
    return values


def keyed_lists(text, flag):
    """`gaussian=0.2,0.3;speckle=0.4` as {key: [floats]}."""
    levels = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, values = part.partition("=")
        if not sep:
            raise ValueError(
                f"{flag} is written name=v1,v2 (several separated by ';'), e.g. "
                f"gaussian=0.2,0.3 or autoattack=1,2. Received: {text!r}"
            )
        levels[key.strip()] = number_list(values, flag)
    return levels


def keyed_text(levels, scale=1):
    """{key: [floats]} as keyed_lists reads it."""
    return ";".join(
        f"{k}=" + ",".join(f"{round(v * scale, 6):g}" for v in values)
        for k, values in levels.items()
    )


def parse_severities(text):
    """`1,5` or `1-5` (or a mix, `1,3-5`) as a sorted list of ints in 1..5;
    a backward range (`5-1`) or a chain (`1-3-5`) is refused."""
    values = set()
    for part in text.split(","):
        bounds = part.strip().split("-")
        try:
            numbers = [int(b) for b in bounds]
        except ValueError:
            numbers = []
        if not numbers or len(numbers) > 2:
            raise ValueError(
                "severities must be integers 1-5 as a list or a range (1,5 or "
                f"1-5 or 1,3-5). Received: severities={text!r}"
            )
        if not all(1 <= n <= 5 for n in numbers):
            raise ValueError(
                f"severity must be an integer in 1-5. Received: severities={text!r}"
            )
        if len(numbers) == 2:
            low, high = numbers
            if low > high:
                raise ValueError(
                    f"a severity range goes from low to high ({high}-{low}). "
                    f"Received: severities={text!r}"
                )
            numbers = list(range(low, high + 1))
        values.update(numbers)
    return sorted(values)
