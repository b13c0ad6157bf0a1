"""`setting()`: a config dataclass field that carries its own description.

The command line builds its options from the config dataclasses
(`keras_damped/cli/_options.py`): the name, the default and the help text of
an option are the field's, so each is written once, here in the config.
"""

import dataclasses


def setting(default=dataclasses.MISSING, *, help, factory=dataclasses.MISSING):
    """A dataclass field with `help`, the text `--help` shows for it."""
    return dataclasses.field(
        default=default, default_factory=factory, metadata={"help": help}
    )


def default_of(config_class, name):
    """The default value of field `name` of a dataclass."""
    field = fields_of(config_class)[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def help_of(config_class, name):
    return fields_of(config_class)[name].metadata.get("help", "")


def fields_of(config_class):
    return {f.name: f for f in dataclasses.fields(config_class)}
