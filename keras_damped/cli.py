"""The `keras-damped` command: parses the options, calls the library, prints."""

import argparse
import logging
import sys


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-damped",
        description="Damped (interpolated) residual networks for Keras 3.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser(
        "models", help="list the registered models with their parameter counts"
    )
    models.add_argument(
        "--pattern",
        action="append",
        default=None,
        help="shell-style name pattern, repeatable (default: all models)",
    )
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    _add_study_parser(sub)
    _add_analysis_parsers(sub)
    return parser


def _add_analysis_parsers(sub):
    helps = {
        "landscape": "input-space loss landscapes (1D along the attack and a random "
        "direction, 2D over both) of one or several models",
        "analyze": "stability: perturbation growth per block, block Jacobian "
        "spectral norms and the learned lambdas by depth",
    }
    for command, text in helps.items():
        parser = sub.add_parser(
            command,
            help=text,
            description=text + ". Writes OUT/analysis.json, plots/*.png and tb/.",
        )
        parser.add_argument(
            "--model",
            action="append",
            required=True,
            help="a .keras file; repeat for several models",
        )
        parser.add_argument("--dataset", default="cifar10")
        parser.add_argument(
            "--test-limit",
            type=_positive_int("--test-limit"),
            default=128,
            help="the first N test examples form the batch",
        )
        _renamed(parser, "--limit", "--test-limit")
        parser.add_argument(
            "--T",
            type=float,
            default=16.0,
            help="landscape half-width in units of 1/255",
        )
        parser.add_argument(
            "--points",
            type=int,
            default=33,
            help="1D landscape grid points (2D: a third, odd)",
        )
        parser.add_argument(
            "--no-clip",
            dest="clip",
            action="store_false",
            help="do not clip x + t d to [0, 1]",
        )
        parser.add_argument(
            "--epsilon",
            type=float,
            default=1e-2,
            help="L2 norm of the perturbations (analyze)",
        )
        parser.add_argument(
            "--iterations", type=int, default=20, help="power iterations (analyze)"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--data-dir", default=None)
        parser.add_argument("--out", required=True)
        parser.add_argument("--overwrite", action="store_true")


def _analysis(args):
    from keras_damped._staging import check_out_dir
    from keras_damped.analysis import analyze_saved
    from keras_damped.analysis import save_analysis

    check_out_dir(args.out, args.overwrite)
    result = analyze_saved(
        args.model,
        args.dataset,
        test_limit=args.test_limit,
        data_dir=args.data_dir,
        T=args.T / 255,
        points=args.points,
        points_2d=max(3, (args.points // 3) | 1),
        clip=args.clip,
        epsilon=args.epsilon,
        iterations=args.iterations,
        seed=args.seed,
        parts=("landscape",) if args.command == "landscape" else ("stability",),
    )
    out = save_analysis(result, args.out, overwrite=args.overwrite)
    print(f"Wrote {out}/analysis.json and plots/*.png.")
    print(f"TensorBoard: tensorboard --logdir {out}/tb")


class _RenamedFlag(argparse.Action):
    """A flag that was renamed: using it stops with the new name."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed: use {self.const}.")


def _renamed(parser, old, new):
    parser.add_argument(
        old,
        action=_RenamedFlag,
        nargs="?",
        const=new,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def _number_list(text, what):
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


def _add_robustness_options(parser, attacks):
    """The evaluation options `evaluate` and `study` share (EvalConfig's)."""
    _add_attack_options(parser, attacks)
    _add_data_options(parser)
    _add_budget_and_protocol_options(parser)


def _add_attack_options(parser, attacks):
    """Which attacks run, at which radii, and users' attack modules."""
    parser.add_argument(
        "--attacks",
        default=attacks,
        help="comma-separated registered attacks: fgsm, ifgsm, pgd, mim, cw_l2, "
        "spsa, apgd_ce, apgd_t, square, autoattack (APGD-CE, APGD-T, Square in "
        "sequence), your own (see --import); 'all' for every attack, 'none' "
        "for no attack",
    )
    parser.add_argument(
        "--eps",
        default="1,2,4,8",
        help="radii in units of 1/255, each in (0, 255], comma-separated",
    )
    parser.add_argument(
        "--attack-eps",
        default="",
        help="radii of one attack instead of --eps, e.g. autoattack=1,2; "
        "several attacks separated by ';'",
    )
    parser.add_argument(
        "--import",
        dest="plugins",
        default="",
        help="comma-separated modules to import first: they register attacks "
        "of your own (keras_damped.robustness.register_attack)",
    )


def _add_data_options(parser):
    """The noise group and the test examples."""
    from keras_damped.robustness.config import NOISE_SOURCES
    from keras_damped.robustness.config import EvalConfig

    d = EvalConfig()
    parser.add_argument(
        "--noises",
        default="gaussian,shot,impulse,speckle",
        help="comma-separated, or 'none'",
    )
    parser.add_argument("--severities", default="1-5", help="e.g. 1,5 or 1-5")
    parser.add_argument(
        "--noise-levels",
        default="",
        help="explicit noise parameters beyond the severities, e.g. "
        "gaussian=0.15,0.2,0.3,0.4 (sigmas); several noises separated by ';'",
    )
    parser.add_argument("--noise-source", default=d.noise_source, choices=NOISE_SOURCES)
    parser.add_argument(
        "--test-limit",
        type=_positive_int("--test-limit"),
        default=d.test_limit,
        help="the first N test examples (clean accuracy, noise; the study also "
        "validates on them)",
    )
    _renamed(parser, "--limit", "--test-limit")
    parser.add_argument(
        "--attack-limit",
        type=_positive_int("--attack-limit"),
        default=None,
        help="attack only the first N of the --test-limit examples (default: "
        "all); clean accuracy and noise use all of them",
    )


def _add_budget_and_protocol_options(parser):
    """The attacks' budgets and the authors' protocols."""
    from keras_damped.robustness.config import EvalConfig

    d = EvalConfig()
    budgets = (
        ("--steps", "iterations of IFGSM, PGD, MIM and SPSA (C&W runs 10x)"),
        ("--apgd-steps", "iterations of APGD-CE and of each APGD-T target"),
        ("--target-classes", "target classes of APGD-T"),
        ("--square-queries", "queries of the Square attack"),
    )
    for flag, text in budgets:
        default = getattr(d, flag[2:].replace("-", "_"))
        text += f" (default {default}"
        text += ", AutoAttack's standard)" if flag != "--steps" else ")"
        parser.add_argument(flag, type=_positive_int(flag), default=default, help=text)
    parser.add_argument(
        "--protocols",
        default="pixel",
        help="comma-separated: pixel (the standard threat model), "
        "authors-2020-06 (the authors' scripts published with the paper), "
        "authors-2020-08 (their August 2020 update)",
    )
    parser.add_argument(
        "--protocol-attacks",
        default=None,
        help="the attacks of the authors' protocols, from fgsm, ifgsm, pgd "
        "(default: --attacks)",
    )
    parser.add_argument(
        "--protocol-eps",
        default=None,
        help="the stated radii of the authors' protocols in units of 1/255 "
        "(default: --eps)",
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data folder")


def _eval_config(args, batch_size, seed, **extra):
    """The `EvalConfig` of the shared options, validated."""
    import dataclasses

    from keras_damped.robustness import EvalConfig

    def radii(text, flag):
        return [e / 255 for e in _number_list(text, flag)] if text.strip() else []

    # Options named as EvalConfig's fields pass as they are; these need parsing.
    same = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(EvalConfig)
        if hasattr(args, f.name)
    }
    parsed = {
        "attacks": _split(args.attacks),
        "eps": radii(args.eps, "--eps"),
        "attack_eps": {
            attack: [e / 255 for e in values]
            for attack, values in _keyed_lists(args.attack_eps, "--attack-eps").items()
        },
        "noises": _split(args.noises),
        "severities": parse_severities(args.severities),
        "noise_levels": _keyed_lists(args.noise_levels, "--noise-levels"),
        "batch_size": batch_size,
        "seed": seed,
        "protocols": _split(args.protocols),
        "protocol_attacks": (
            None if args.protocol_attacks is None else _split(args.protocol_attacks)
        ),
        "protocol_eps": (
            None
            if args.protocol_eps is None
            else radii(args.protocol_eps, "--protocol-eps")
        ),
        "plugins": _split(args.plugins) if args.plugins.strip() else [],
    }
    return EvalConfig(**{**same, **parsed, **extra}).validate()


def _add_evaluate_parser(sub):
    from keras_damped.training.config import JIT_CHOICES

    evaluate = sub.add_parser(
        "evaluate",
        help="robustness of one or several models: noise and adversarial attacks",
        description="Evaluate models side by side on the same examples, noise "
        "draws and attack seeds. Writes OUT/report.json, report.md, plots/ and "
        "tb/.",
    )
    evaluate.add_argument(
        "--model",
        action="append",
        required=True,
        help="a .keras file; repeat for several models",
    )
    evaluate.add_argument("--dataset", default="cifar10")
    _add_robustness_options(evaluate, attacks="fgsm,ifgsm,pgd")
    evaluate.add_argument(
        "--batch-size", type=_positive_int("--batch-size"), default=128
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--jit-compile",
        choices=JIT_CHOICES,
        default="auto",
        help="compile the attacks with XLA: auto (as for training: on "
        "accelerators and on CPUs where XLA is faster), on or off",
    )
    evaluate.add_argument(
        "--mean",
        default=None,
        help="per-channel mean in pixel units, comma-separated, for the authors' "
        "protocols on a model without a Normalization layer on its input",
    )
    evaluate.add_argument("--std", default=None, help="the same for the std")
    evaluate.add_argument("--out", required=True, help="the output folder")
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace the results in OUT"
    )


def _positive_int(flag):
    """An argparse type: `keras_damped.validators.positive_int` of the text."""
    from keras_damped.validators import positive_int

    def parse(text):
        try:
            return positive_int(flag, int(text))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a positive integer. Received: {text!r}"
            ) from None

    return parse


def _split(text):
    return (
        []
        if text.strip().lower() == "none"
        else [t.strip() for t in text.split(",") if t.strip()]
    )


def _evaluate(args):
    from keras_damped._staging import check_out_dir
    from keras_damped.robustness import evaluate

    config = _eval_config(
        args,
        args.batch_size,
        args.seed,
        mean=None if args.mean is None else _number_list(args.mean, "--mean"),
        std=None if args.std is None else _number_list(args.std, "--std"),
    )
    check_out_dir(args.out, args.overwrite)
    report = evaluate(args.model, config)
    out = report.save(args.out, overwrite=args.overwrite)
    print(report.to_markdown())
    print(f"Wrote {out}/report.json, report.md and plots/*.png.")
    print(f"TensorBoard: tensorboard --logdir {out}/tb")


def _add_study_parser(sub):
    from keras_damped.robustness.config import EvalConfig
    from keras_damped.training.config import TrainConfig

    study = sub.add_parser(
        "study",
        help="models x seeds: train, evaluate, and compare with confidence "
        "intervals and paired differences",
        description="Train every model with every seed (OUT/runs/<model>/seed<k>), "
        "evaluate each run on the same test images, noise draws and attack "
        "seeds, and write OUT/study.json, study.md, plots/ and tb/ (TensorBoard "
        "HParams). Re-running the same command resumes.",
    )
    study.add_argument("--models", required=True, help="comma-separated presets")
    study.add_argument(
        "--seeds", default="0,1,2", help="comma-separated integers (default 0,1,2)"
    )
    study.add_argument(
        "--baseline",
        default=None,
        help="the model differences are taken against (default: the first model)",
    )
    study.add_argument("--dataset", default="fashion_mnist")
    study.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    _add_training_options(study)
    _add_robustness_options(study, attacks="fgsm,pgd")
    study.add_argument(
        "--eval-batch-size",
        type=_positive_int("--eval-batch-size"),
        default=EvalConfig().batch_size,
    )
    study.add_argument("--eval-seed", type=int, default=EvalConfig().seed)
    study.add_argument(
        "--threads",
        type=_positive_int("--threads"),
        default=1,
        help="TensorFlow threads per run (default 1: independent runs use "
        "the cores better than one run does; a run's numbers depend on it)",
    )
    study.add_argument(
        "--jobs",
        type=_positive_int("--jobs"),
        default=None,
        help="runs trained and evaluated at once, each in its own process "
        "(default: cores / --threads); the numbers do not depend on it",
    )
    study.add_argument(
        "--landscape",
        action="store_true",
        help="also the input-space loss landscape of every run "
        "(OUT/landscape.json, plots/landscape_1d.png)",
    )
    study.add_argument("--out", required=True, help="the study folder")
    study.add_argument(
        "--overwrite", action="store_true", help="replace what OUT holds"
    )
    study.add_argument(
        "--compare-with",
        default=None,
        help="another study's folder, of the same kinds of model at another "
        "depth: study.md then shows how the effect of damping changes "
        "between them",
    )
    study.add_argument(
        "--train-only",
        action="store_true",
        help="train (or resume) every run and stop there: no evaluation and "
        "no study outputs; the same command without it evaluates the trained "
        "runs",
    )


def _keyed_lists(text, flag):
    """`gaussian=0.2,0.3;speckle=0.4` as {key: [floats]}."""
    levels = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, values = part.partition("=")
        if not sep:
            raise ValueError(
                f"{flag} is written name=v1,v2 (several separated by ';'), e.g. "
                f"gaussian=0.2,0.3 or autoattack=1,2. Received: {text!r}"
            )
        levels[key.strip()] = _number_list(values, flag)
    return levels


def _int_list(text, what):
    values = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            values.append(int(part))
        except ValueError:
            raise ValueError(
                f"{what} must be comma-separated integers. Received: {text!r}"
            ) from None
    return values


def _study(args):
    from keras_damped.study import StudyConfig
    from keras_damped.study import run_study
    from keras_damped.training import TrainConfig

    config = StudyConfig(
        models=_split(args.models),
        seeds=_int_list(args.seeds, "--seeds"),
        out=args.out,
        train=TrainConfig(
            dataset=args.dataset,
            epochs=args.epochs,
            test_limit=args.test_limit,
            **_training_settings(args),
        ),
        evaluation=_eval_config(args, args.eval_batch_size, args.eval_seed),
        baseline=args.baseline,
        threads=args.threads,
        landscape=args.landscape,
        compare_with=args.compare_with,
    )
    run_study(
        config,
        overwrite=args.overwrite,
        log=lambda line: print(line, flush=True),
        jobs=args.jobs,
        train_only=args.train_only,
    )


def _add_training_options(parser):
    """The training hyperparameters `train` and `study` share (TrainConfig's)."""
    from keras_damped.training.config import JIT_CHOICES
    from keras_damped.training.config import PRECISIONS
    from keras_damped.training.config import TrainConfig
    from keras_damped.training.schedules import SCHEDULES

    defaults = TrainConfig()
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="global batch size (split across replicas)",
    )
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--momentum", type=float, default=defaults.momentum)
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=defaults.weight_decay,
        help="coupled L2 decay, as the reference's PyTorch SGD",
    )
    parser.add_argument(
        "--no-decay-damping",
        dest="decay_damping",
        action="store_false",
        help="do not apply weight decay to the damping weights",
    )
    parser.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    parser.add_argument(
        "--augment", default=defaults.augment, help="paper, standard or none"
    )
    parser.add_argument(
        "--jit-compile", choices=JIT_CHOICES, default=defaults.jit_compile
    )
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision)
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="train on the first N training examples (default: all)",
    )


def _training_settings(args):
    """TrainConfig's fields from the shared training options."""
    return {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "decay_damping": args.decay_damping,
        "schedule": args.schedule,
        "augment": None if args.augment in (None, "none") else args.augment,
        "jit_compile": args.jit_compile,
        "precision": args.precision,
        "train_limit": args.train_limit,
        "data_dir": args.data_dir,
    }


def _add_train_parser(sub):
    from keras_damped.training.config import DISTRIBUTE_CHOICES
    from keras_damped.training.config import TrainConfig

    defaults = TrainConfig()
    train = sub.add_parser(
        "train",
        help="train a model with the paper's protocol and write a run folder",
        description="Train with the paper's protocol (SGD momentum 0.9, weight "
        "decay 1e-4, lr 0.1 divided by 10 at 50%% and 75%% of the steps). "
        "Writes RUN_DIR/config.json, tb/, checkpoints/ and model.keras.",
    )
    train.add_argument(
        "--model",
        default=defaults.model,
        help="preset name (see `keras-damped models`) or a .keras file",
    )
    train.add_argument(
        "--dataset", default=defaults.dataset, help="cifar10, cifar100 or fashion_mnist"
    )
    train.add_argument("--run-dir", required=True, help="the run folder to write")
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    _add_training_options(train)
    _renamed(train, "--limit", "--train-limit")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="validate on the first N test examples",
    )
    train.add_argument(
        "--validation-split",
        type=float,
        default=0.0,
        help="hold out this fraction of the training set instead "
        "of validating on the test split",
    )
    train.add_argument(
        "--distribute", choices=DISTRIBUTE_CHOICES, default=defaults.distribute
    )
    train.add_argument("--data-dir", default=None, help="TFDS data folder")
    train.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=(0, 1, 2),
        help="Keras progress: 0 silent, 1 bar, 2 a line per epoch",
    )
    mode = train.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR"
    )
    mode.add_argument(
        "--overwrite", action="store_true", help="replace the run in RUN_DIR"
    )


def _train(args):
    from keras_damped.training import TrainConfig
    from keras_damped.training import train

    config = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        run_dir=args.run_dir,
        epochs=args.epochs,
        seed=args.seed,
        test_limit=args.test_limit,
        validation_split=args.validation_split,
        distribute=args.distribute,
        verbose=args.verbose,
        **_training_settings(args),
    )
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    accuracy = result.history.get("val_accuracy", [float("nan")])[-1]
    print(
        f"Finished: {result.run_dir}/model.keras (last validation accuracy "
        f"{accuracy:.4f}). TensorBoard: tensorboard --logdir {result.run_dir}/tb"
    )


def main(argv=None):
    from keras_damped._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stdout, format="%(message)s")
    logging.getLogger("keras_damped").setLevel(logging.INFO)
    from keras_damped.data import DatasetUnavailableError
    from keras_damped.study.runner import StudyRunFailedError
    from keras_damped.training import RunDirExistsError
    from keras_damped.training import TrainingDivergedError

    try:
        if args.command == "models":
            from keras_damped.models.registry import models_table

            print(models_table(args.pattern or ["*"]))
        elif args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "study":
            _study(args)
        elif args.command in ("landscape", "analyze"):
            _analysis(args)
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


if __name__ == "__main__":
    sys.exit(main())
