"""The options of the training and evaluation settings (`TrainConfig`,
`EvalConfig`), shared by the commands that take them, and the configs built
from them."""

from keras_damped.cli._options import add_setting
from keras_damped.cli._options import in_255ths
from keras_damped.cli._options import keyed_lists
from keras_damped.cli._options import keyed_text
from keras_damped.cli._options import number_list
from keras_damped.cli._options import parse_severities
from keras_damped.cli._options import positive_int
from keras_damped.cli._options import renamed
from keras_damped.cli._options import severity_text
from keras_damped.cli._options import split
from keras_damped.cli._options import words


def add_training_options(parser, defaults):
    """TrainConfig's shared options, their defaults from `defaults` (a
    TrainConfig)."""
    from keras_damped.training.config import JIT_CHOICES
    from keras_damped.training.config import PRECISIONS
    from keras_damped.training.schedules import SCHEDULES

    add_setting(parser, defaults, "batch_size", type=int)
    for name in ("lr", "momentum", "weight_decay"):
        add_setting(parser, defaults, name, type=float)
    add_setting(
        parser,
        defaults,
        "decay_damping",
        "--no-decay-damping",
        action="store_false",
        help="do not apply weight decay to the damping weights",
    )
    add_setting(parser, defaults, "schedule", choices=SCHEDULES)
    add_setting(parser, defaults, "augment", show=str)
    add_setting(parser, defaults, "jit_compile", choices=JIT_CHOICES)
    add_setting(parser, defaults, "precision", choices=PRECISIONS)
    add_setting(parser, defaults, "train_limit", type=int)


def training_settings(args):
    """TrainConfig's fields from the shared training options: what decides
    what a run trains (`TRAINING_KEYS`) but the dataset and the epochs,
    which each command takes itself, and the data folder."""
    from keras_damped.study.config import TRAINING_KEYS

    shared = [k for k in TRAINING_KEYS if k not in ("dataset", "epochs")]
    settings = {name: getattr(args, name) for name in shared}
    if settings["augment"] in (None, "none"):
        settings["augment"] = None
    settings["data_dir"] = args.data_dir
    return settings


def add_robustness_options(parser, defaults):
    """EvalConfig's options, their defaults from `defaults` (an EvalConfig):
    the attacks and their radii, the noise group and the test examples, the
    budgets and the authors' protocols."""
    from keras_damped.robustness.config import NOISE_SOURCES

    add_setting(parser, defaults, "attacks", show=words)
    add_setting(parser, defaults, "eps", show=in_255ths)
    add_setting(parser, defaults, "attack_eps", show=lambda v: keyed_text(v, 255))
    add_setting(parser, defaults, "plugins", "--import", show=",".join)
    add_setting(parser, defaults, "noises", show=words)
    add_setting(parser, defaults, "severities", show=severity_text)
    add_setting(parser, defaults, "noise_levels", show=keyed_text)
    add_setting(parser, defaults, "noise_source", choices=NOISE_SOURCES)
    add_setting(parser, defaults, "test_limit", type=positive_int("--test-limit"))
    renamed(parser, "--limit", "--test-limit")
    add_setting(parser, defaults, "attack_limit", type=positive_int("--attack-limit"))
    for name in ("steps", "apgd_steps", "target_classes", "square_queries"):
        flag = "--" + name.replace("_", "-")
        add_setting(parser, defaults, name, type=positive_int(flag))
    add_setting(parser, defaults, "protocols", show=words)
    add_setting(parser, defaults, "protocol_attacks", show=words)
    add_setting(parser, defaults, "protocol_eps", show=in_255ths)
    add_setting(parser, defaults, "data_dir")
    add_setting(
        parser,
        defaults,
        "batch_size",
        "--eval-batch-size",
        dest="eval_batch_size",
        type=positive_int("--eval-batch-size"),
    )
    add_setting(parser, defaults, "seed", "--eval-seed", dest="eval_seed", type=int)


def eval_config(args, **extra):
    """The `EvalConfig` of the robustness options, validated."""
    import dataclasses

    from keras_damped.robustness import EvalConfig

    # L-infinity radii are written in 1/255, L2 radii as they are.
    scale = 255 if getattr(args, "norm", "linf") == "linf" else 1

    def radii(text, flag):
        return [e / scale for e in number_list(text, flag)] if text.strip() else []

    # Options named as EvalConfig's fields pass as they are; these need parsing.
    same = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(EvalConfig)
        if hasattr(args, f.name)
    }
    parsed = {
        "attacks": split(args.attacks),
        "eps": None if args.eps is None else radii(args.eps, "--eps"),
        "attack_eps": {
            attack: [e / scale for e in values]
            for attack, values in keyed_lists(args.attack_eps, "--attack-eps").items()
        },
        "noises": split(args.noises),
        "severities": parse_severities(args.severities),
        "noise_levels": keyed_lists(args.noise_levels, "--noise-levels"),
        "batch_size": args.eval_batch_size,
        "seed": args.eval_seed,
        "protocols": split(args.protocols),
        "protocol_attacks": (
            None if args.protocol_attacks is None else split(args.protocol_attacks)
        ),
        "protocol_eps": (
            None
            if args.protocol_eps is None
            else radii(args.protocol_eps, "--protocol-eps")
        ),
        "plugins": split(args.plugins) if args.plugins.strip() else [],
    }
    return EvalConfig(**{**same, **parsed, **extra}).validate()
