"""`keras-damped study`: models x seeds, trained, evaluated and compared."""

from keras_damped.cli._configs import add_robustness_options
from keras_damped.cli._configs import add_training_options
from keras_damped.cli._configs import eval_config
from keras_damped.cli._configs import training_settings
from keras_damped.cli._options import HELP_FORMAT
from keras_damped.cli._options import add_setting
from keras_damped.cli._options import int_list
from keras_damped.cli._options import positive_int
from keras_damped.cli._options import split_all
from keras_damped.cli._options import words


def add_parser(sub):
    from keras_damped.study.config import SEEDS
    from keras_damped.study.config import StudyConfig

    parser = sub.add_parser(
        "study",
        formatter_class=HELP_FORMAT,
        help="models x seeds: train, evaluate, and compare with confidence "
        "intervals and paired differences",
        description="Train every model with every seed (OUT/runs/<model>/seed<k>), "
        "evaluate each run on the same test images, noise draws and attack "
        "seeds, and write OUT/study.json, study.md, plots/ and tb/ (TensorBoard "
        "HParams). Re-running the same command resumes.",
    )
    defaults = StudyConfig(models=[], seeds=list(SEEDS), out="")
    add_setting(
        parser, StudyConfig, "models", "--model", action="append", required=True
    )
    add_setting(parser, defaults, "seeds", show=words)
    add_setting(parser, defaults, "baseline")
    add_setting(parser, defaults.train, "dataset")
    add_setting(parser, defaults.train, "epochs", type=int)
    add_training_options(parser, defaults.train)
    add_robustness_options(parser, defaults.evaluation)
    add_setting(parser, defaults, "threads", type=positive_int("--threads"))
    parser.add_argument(
        "--jobs",
        type=positive_int("--jobs"),
        default=None,
        help="runs trained and evaluated at once, each in its own process "
        "(default: cores / --threads); the numbers do not depend on it",
    )
    add_setting(parser, defaults, "landscape", action="store_true")
    add_setting(parser, StudyConfig, "out", required=True)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace what OUT holds"
    )
    add_setting(parser, defaults, "compare_with")
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="train (or resume) every run and stop there: no evaluation and "
        "no study outputs; the same command without it evaluates the trained "
        "runs",
    )
    parser.set_defaults(run=run)


def config(args):
    """The `StudyConfig` (its evaluation validated; `run_study` checks the
    rest)."""
    from keras_damped.study import StudyConfig
    from keras_damped.training import TrainConfig

    return StudyConfig(
        models=split_all(args.models),
        seeds=int_list(args.seeds, "--seeds"),
        out=args.out,
        train=TrainConfig(
            dataset=args.dataset,
            epochs=args.epochs,
            test_limit=args.test_limit,
            **training_settings(args),
        ),
        evaluation=eval_config(args),
        baseline=args.baseline,
        threads=args.threads,
        landscape=args.landscape,
        compare_with=args.compare_with,
    )


def run(args):
    from keras_damped.study import run_study

    run_study(
        config(args),
        overwrite=args.overwrite,
        log=lambda line: print(line, flush=True),
        jobs=args.jobs,
        train_only=args.train_only,
    )
