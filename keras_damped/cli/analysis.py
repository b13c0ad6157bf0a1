"""`keras-damped landscape` and `keras-damped analyze`: loss landscapes and
stability measurements of saved models."""

import inspect

from keras_damped.cli._options import HELP_FORMAT
from keras_damped.cli._options import positive_int
from keras_damped.cli._options import renamed
from keras_damped.cli._options import split_all

HELPS = {
    "landscape": "input-space loss landscapes (1D along the attack and a random "
    "direction, 2D over both) of one or several models",
    "analyze": "stability: perturbation growth per block, block Jacobian "
    "spectral norms and the learned lambdas by depth",
}


def _defaults():
    """`analyze_saved` and `analyze`'s own defaults: declared there, once."""
    from keras_damped.analysis.report import analyze
    from keras_damped.analysis.report import analyze_saved

    defaults = {}
    for function in (analyze_saved, analyze):
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    return defaults


def add_parser(sub):
    d = _defaults()
    for command, text in HELPS.items():
        parser = sub.add_parser(
            command,
            formatter_class=HELP_FORMAT,
            help=text,
            description=text + ". Writes OUT/analysis.json, plots/*.png and tb/.",
        )
        parser.add_argument(
            "--model",
            action="append",
            required=True,
            help="a .keras file; repeat (or comma-separate) for several models",
        )
        parser.add_argument(
            "--dataset",
            default="fashion_mnist",
            help="cifar10, cifar100 or fashion_mnist (the offline default, as "
            "in train, evaluate and study)",
        )
        parser.add_argument(
            "--test-limit",
            type=positive_int("--test-limit"),
            default=d["test_limit"],
            help="the first N test examples form the batch",
        )
        renamed(parser, "--limit", "--test-limit")
        parser.add_argument(
            "--T",
            type=float,
            default=round(d["T"] * 255, 6),
            help="landscape half-width in units of 1/255",
        )
        parser.add_argument(
            "--points",
            type=int,
            default=d["points"],
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
            default=d["epsilon"],
            help="L2 norm of the perturbations (analyze)",
        )
        parser.add_argument(
            "--iterations",
            type=int,
            default=d["iterations"],
            help="power iterations (analyze)",
        )
        parser.add_argument(
            "--eval-seed",
            type=int,
            default=d["seed"],
            help="seeds the random landscape direction and the perturbations",
        )
        parser.add_argument("--data-dir", default=None, help="TFDS data folder")
        parser.add_argument("--out", required=True, help="the output folder")
        parser.add_argument(
            "--overwrite", action="store_true", help="replace the results in OUT"
        )
        parser.set_defaults(run=run)


def run(args):
    from keras_damped._staging import check_out_dir
    from keras_damped.analysis import analyze_saved
    from keras_damped.analysis import save_analysis

    check_out_dir(args.out, args.overwrite)
    result = analyze_saved(
        split_all(args.model),
        args.dataset,
        test_limit=args.test_limit,
        data_dir=args.data_dir,
        T=args.T / 255,
        points=args.points,
        points_2d=max(3, (args.points // 3) | 1),
        clip=args.clip,
        epsilon=args.epsilon,
        iterations=args.iterations,
        seed=args.eval_seed,
        parts=("landscape",) if args.command == "landscape" else ("stability",),
    )
    out = save_analysis(result, args.out, overwrite=args.overwrite)
    print(f"Wrote {out}/analysis.json and plots/*.png.")
    print(f"TensorBoard: tensorboard --logdir {out}/tb")
