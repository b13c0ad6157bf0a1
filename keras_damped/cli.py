"""The `keras-damped` command."""

import argparse
import logging
import math
import sys


def _models_table(patterns):
    import numpy as np

    from keras_damped.models import create_model
    from keras_damped.models import damping_values
    from keras_damped.models import list_models
    from keras_damped.models.registry import preset_config

    names = sorted({n for p in patterns for n in list_models(p)})
    if not names:
        raise SystemExit(
            f"keras-damped: no model matches {patterns}. Known models: "
            f"{', '.join(list_models())}"
        )
    header = [
        "model",
        "family",
        "depth",
        "block",
        "parameters",
        "damped blocks",
        "initial lambda",
    ]
    rows = []
    for name in names:
        model = create_model(name)
        _, description, kwargs = preset_config(name)
        first = model.get_layer("stage1_block1")
        lams = np.concatenate(
            [np.ravel(v) for v in damping_values(model).values()] or [np.zeros(0)]
        )
        if lams.size == 0:
            lam = "0 (ResNet)"
        elif lams.min() == lams.max():
            lam = f"{lams.min():.2f} (fixed)"
        else:
            lam = f"{lams.min():.3f} - {lams.max():.3f}"
        rows.append(
            [
                name,
                "ResNeXt" if "resnext" in name else "ResNet",
                str(kwargs["depth"]),
                type(first).__name__.replace("Block", "").lower()
                + (
                    f" C={first.cardinality}"
                    if getattr(first, "cardinality", 1) > 1
                    else ""
                ),
                f"{model.count_params() - _non_trainable(model):,}",
                str(len(damping_values(model))),
                lam,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows
    ]
    return "\n".join(lines)


def _non_trainable(model):
    import numpy as np

    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


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
            "--limit",
            type=int,
            default=128,
            help="the first N test examples form the batch",
        )
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
    import os

    from keras_damped.analysis import analyze
    from keras_damped.analysis import save_analysis
    from keras_damped.data import load_arrays
    from keras_damped.robustness.evaluate import _named_models

    if os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
        raise ValueError(
            f"{args.out} already holds results; nothing was changed. Pass "
            "--overwrite or choose another --out."
        )
    if args.limit < 1:
        raise ValueError(f"limit must be a positive integer. Received: {args.limit}")
    models = _named_models(args.model)
    images, labels = load_arrays(args.dataset, "test", args.data_dir, args.limit)
    for name, model in models.items():
        if tuple(model.input_shape[1:]) != images.shape[1:]:
            raise ValueError(
                f"Model {name!r} takes inputs {model.input_shape}, but the "
                f"{args.dataset} images are {(None, *images.shape[1:])}."
            )
    points_2d = max(3, (args.points // 3) | 1)
    result = analyze(
        models,
        images / 255.0,
        labels,
        T=args.T / 255,
        points=args.points,
        points_2d=points_2d,
        clip=args.clip,
        epsilon=args.epsilon,
        iterations=args.iterations,
        seed=args.seed,
        parts=("landscape",) if args.command == "landscape" else ("stability",),
    )
    out = save_analysis(result, args.out, overwrite=args.overwrite)
    print(f"Wrote {out}/analysis.json and plots/*.png.")
    print(f"TensorBoard: tensorboard --logdir {out}/tb")


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
    """`1,5` or `1-5` (or a mix, `1,3-5`) as a sorted list of ints in 1..5."""
    values = set()
    for part in text.split(","):
        bounds = part.strip().split("-")
        try:
            numbers = [int(b) for b in bounds]
        except ValueError:
            raise ValueError(
                f"severities must be integers 1-5 as a list or a range "
                f"(1,5 or 1-5). Received: {text!r}"
            ) from None
        if len(numbers) == 2:
            numbers = list(range(numbers[0], numbers[1] + 1)) or numbers
        if len(numbers) > 5 or not all(1 <= n <= 5 for n in numbers):
            raise ValueError(
                f"severity must be an integer in 1-5. Received: severities={text!r}"
            )
        values.update(numbers)
    return sorted(values)


def _add_robustness_options(parser, attacks):
    """The attack and noise options `evaluate` and `study` share."""
    from keras_damped.robustness.autoattack import APGD_STEPS
    from keras_damped.robustness.autoattack import SQUARE_QUERIES
    from keras_damped.robustness.autoattack import TARGET_CLASSES

    parser.add_argument(
        "--attacks",
        default=attacks,
        help="comma-separated: fgsm, ifgsm, pgd, mim, cw_l2, spsa, apgd_ce, "
        "apgd_t, square, autoattack (APGD-CE, APGD-T, Square in sequence); "
        "'all' for every attack, 'none' for no attack",
    )
    parser.add_argument(
        "--eps", default="1,2,4,8", help="radii in units of 1/255, comma-separated"
    )
    parser.add_argument(
        "--noises",
        default="gaussian,shot,impulse,speckle",
        help="comma-separated, or 'none'",
    )
    parser.add_argument("--severities", default="1-5", help="e.g. 1,5 or 1-5")
    parser.add_argument(
        "--attack-limit",
        type=_positive_int("--attack-limit"),
        default=None,
        help="attack only the first N of the --limit test examples (default: "
        "all); clean accuracy and noise use all of them",
    )
    parser.add_argument(
        "--apgd-steps",
        type=_positive_int("--apgd-steps"),
        default=APGD_STEPS,
        help="iterations of APGD-CE and of each APGD-T target (AutoAttack: 100)",
    )
    parser.add_argument(
        "--target-classes",
        type=_positive_int("--target-classes"),
        default=TARGET_CLASSES,
        help="target classes of APGD-T (AutoAttack: 9)",
    )
    parser.add_argument(
        "--square-queries",
        type=_positive_int("--square-queries"),
        default=SQUARE_QUERIES,
        help="queries of the Square attack (AutoAttack: 5000)",
    )
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


def _protocol_options(args):
    """evaluate()'s protocol keywords from the shared options."""
    from keras_damped.robustness.evaluate import parse_attacks

    options = {"protocols": _split(args.protocols)}
    if args.protocol_attacks is not None:
        options["protocol_attacks"] = parse_attacks(_split(args.protocol_attacks))
    if args.protocol_eps is not None:
        options["protocol_eps"] = [
            e / 255 for e in _number_list(args.protocol_eps, "--protocol-eps")
        ]
    return options


def _add_evaluate_parser(sub):
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
        "--limit", type=int, default=1000, help="the first N test examples"
    )
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--noise-source", default="auto", choices=("auto", "tfds", "generated")
    )
    evaluate.add_argument("--data-dir", default=None)
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
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < 1:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a positive integer. Received: {text!r}"
            )
        return value

    return parse


def _split(text):
    return (
        []
        if text.strip().lower() == "none"
        else [t.strip() for t in text.split(",") if t.strip()]
    )


def _evaluate(args):
    import os

    from keras_damped.robustness import evaluate
    from keras_damped.robustness.evaluate import parse_attacks

    if args.limit < 1:
        raise ValueError(f"limit must be a positive integer. Received: {args.limit}")
    if os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
        raise ValueError(
            f"{args.out} already holds results; nothing was changed. Pass "
            "--overwrite or choose another --out."
        )
    eps_255 = _number_list(args.eps, "--eps")
    bad = [e for e in eps_255 if not math.isfinite(e) or e < 0]
    if bad:
        raise ValueError(
            "--eps takes radii >= 0 in units of 1/255 (e.g. 1,2,4,8). "
            f"Received: {args.eps!r}"
        )
    eps = [e / 255 for e in eps_255]
    report = evaluate(
        args.model,
        args.dataset,
        attacks=parse_attacks(_split(args.attacks)),
        eps=eps,
        noises=_split(args.noises),
        severities=parse_severities(args.severities),
        limit=args.limit,
        batch_size=args.batch_size,
        seed=args.seed,
        noise_source=args.noise_source,
        data_dir=args.data_dir,
        apgd_steps=args.apgd_steps,
        square_queries=args.square_queries,
        target_classes=args.target_classes,
        attack_limit=args.attack_limit,
        mean=None if args.mean is None else _number_list(args.mean, "--mean"),
        std=None if args.std is None else _number_list(args.std, "--std"),
        **_protocol_options(args),
    )
    out = report.save(args.out, overwrite=args.overwrite)
    print(report.to_markdown())
    print(f"Wrote {out}/report.json, report.md and plots/*.png.")
    print(f"TensorBoard: tensorboard --logdir {out}/tb")


def _add_study_parser(sub):
    from keras_damped.study.config import StudyConfig

    d = StudyConfig(models=[], seeds=[], out="")
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
    study.add_argument("--dataset", default=d.dataset)
    study.add_argument("--epochs", type=int, default=d.epochs)
    _add_training_options(study)
    study.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="train on the first N training examples (default: all)",
    )
    _add_robustness_options(study, attacks="fgsm,pgd")
    study.add_argument(
        "--noise-levels",
        default="",
        help="explicit noise parameters beyond the severities, e.g. "
        "gaussian=0.15,0.2,0.3,0.4 (sigmas); repeat noises with ';'",
    )
    study.add_argument(
        "--limit",
        type=int,
        default=d.limit,
        help="test examples for validation and every evaluation",
    )
    study.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    study.add_argument("--eval-seed", type=int, default=d.eval_seed)
    study.add_argument(
        "--noise-source", default=d.noise_source, choices=("auto", "tfds", "generated")
    )
    study.add_argument("--data-dir", default=None)
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
    study.add_argument("--out", required=True, help="the study folder")
    study.add_argument(
        "--overwrite", action="store_true", help="replace what OUT holds"
    )


def parse_noise_levels(text):
    """`gaussian=0.2,0.3;speckle=0.4` as {noise: [floats]}."""
    levels = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        noise, sep, values = part.partition("=")
        if not sep:
            raise ValueError(
                "noise levels are written noise=c1,c2 (several noises separated "
                f"by ';'), e.g. gaussian=0.2,0.3. Received: {text!r}"
            )
        levels[noise.strip()] = _number_list(values, "--noise-levels")
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
    from keras_damped.robustness.evaluate import parse_attacks
    from keras_damped.study import StudyConfig
    from keras_damped.study import run_study

    config = StudyConfig(
        models=_split(args.models),
        seeds=_int_list(args.seeds, "--seeds"),
        out=args.out,
        dataset=args.dataset,
        epochs=args.epochs,
        train_limit=args.train_limit,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        decay_damping=args.decay_damping,
        schedule=args.schedule,
        augment=None if args.augment in (None, "none") else args.augment,
        precision=args.precision,
        jit_compile=args.jit_compile,
        attacks=parse_attacks(_split(args.attacks)),
        eps=_number_list(args.eps, "--eps") if args.eps.strip() else [],
        noises=_split(args.noises),
        severities=parse_severities(args.severities),
        noise_levels=parse_noise_levels(args.noise_levels),
        limit=args.limit,
        eval_batch_size=args.eval_batch_size,
        eval_seed=args.eval_seed,
        baseline=args.baseline,
        noise_source=args.noise_source,
        data_dir=args.data_dir,
        threads=args.threads,
        attack_limit=args.attack_limit,
        apgd_steps=args.apgd_steps,
        target_classes=args.target_classes,
        square_queries=args.square_queries,
        protocols=_split(args.protocols),
        protocol_attacks=(
            None
            if args.protocol_attacks is None
            else parse_attacks(_split(args.protocol_attacks))
        ),
        protocol_eps=(
            None
            if args.protocol_eps is None
            else _number_list(args.protocol_eps, "--protocol-eps")
        ),
    )
    run_study(
        config,
        overwrite=args.overwrite,
        log=lambda line: print(line, flush=True),
        jobs=args.jobs,
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


def _add_train_parser(sub):
    from keras_damped.training.config import DISTRIBUTE_CHOICES
    from keras_damped.training.config import TrainConfig

    defaults = TrainConfig()
    train = sub.add_parser(
        "train",
        help="train a model with the paper's protocol and write a run folder",
        description="Train with the paper's protocol (SGD momentum 0.9, weight "
        "decay 1e-4, lr 0.1 divided by 10 at 50%% and 75%% of the epochs). "
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
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--limit", type=int, default=None, help="train on the first N training examples"
    )
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
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        decay_damping=args.decay_damping,
        schedule=args.schedule,
        augment=None if args.augment in (None, "none") else args.augment,
        jit_compile=args.jit_compile,
        precision=args.precision,
        seed=args.seed,
        limit=args.limit,
        test_limit=args.test_limit,
        validation_split=args.validation_split,
        distribute=args.distribute,
        data_dir=args.data_dir,
        verbose=args.verbose,
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
            print(_models_table(args.pattern or ["*"]))
        elif args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "study":
            _study(args)
        elif args.command in ("landscape", "analyze"):
            _analysis(args)
    except (ValueError, DatasetUnavailableError, RunDirExistsError) as error:
        print(f"keras-damped {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (TrainingDivergedError, StudyRunFailedError) as error:
        print(f"keras-damped {args.command}: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
