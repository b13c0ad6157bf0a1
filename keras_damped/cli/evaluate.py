"""`keras-damped evaluate`: models side by side under noise and attacks."""

import os
import shutil

from keras_damped.cli._configs import add_robustness_options
from keras_damped.cli._configs import eval_config
from keras_damped.cli._options import HELP_FORMAT
from keras_damped.cli._options import add_setting
from keras_damped.cli._options import number_list
from keras_damped.cli._options import split_all


def add_parser(sub):
    from keras_damped.robustness.config import EvalConfig
    from keras_damped.training.config import JIT_CHOICES

    parser = sub.add_parser(
        "evaluate",
        formatter_class=HELP_FORMAT,
        help="robustness of one or several models: noise and adversarial attacks",
        description="Evaluate models side by side on the same examples, noise "
        "draws and attack seeds. Writes OUT/report.json, report.md, plots/ and "
        "tb/. Finished attack batches are kept in OUT.batches/ until then: "
        "the same command after a kill resumes from them.",
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="a .keras file; repeat (or comma-separate) for several models",
    )
    from keras_damped.robustness.registry import NORMS

    add_setting(parser, EvalConfig, "dataset")
    add_setting(parser, EvalConfig, "norm", choices=NORMS)
    add_robustness_options(parser, EvalConfig())
    add_setting(parser, EvalConfig, "jit_compile", choices=JIT_CHOICES)
    add_setting(parser, EvalConfig, "mean")
    add_setting(parser, EvalConfig, "std")
    parser.add_argument("--out", required=True, help="the output folder")
    parser.add_argument(
        "--robustbench-json",
        metavar="FILE",
        help="also write a RobustBench model entry (one model, AutoAttack's "
        "standard version at one radius) to FILE",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results in OUT (and FILE)",
    )
    parser.set_defaults(run=run)


def config(args):
    """The validated `EvalConfig`."""
    return eval_config(
        args,
        mean=None if args.mean is None else number_list(args.mean, "--mean"),
        std=None if args.std is None else number_list(args.std, "--std"),
    )


def run(args):
    from keras_damped._staging import check_out_dir
    from keras_damped.robustness import evaluate

    settings = config(args)
    models = split_all(args.model)
    check_out_dir(args.out, args.overwrite)
    if args.robustbench_json:
        from keras_damped.robustness import leaderboard

        leaderboard.check_leaderboard_run(settings, len(models))
        if os.path.exists(args.robustbench_json) and not args.overwrite:
            raise FileExistsError(
                f"{args.robustbench_json} exists; pass --overwrite to replace it."
            )
    # Finished attack batches wait beside OUT until the report is saved:
    # the same command after a kill resumes from them.
    partial = args.out.rstrip("/" + os.sep) + ".batches"
    report = evaluate(models, settings, partial=partial)
    out = report.save(args.out, overwrite=args.overwrite)
    shutil.rmtree(partial)
    print(report.to_markdown())
    resumed = report.data.get("resumed")
    if resumed:
        print(
            f"Resumed: {resumed['batches_reused']} attack batches came from "
            f"{partial} ({resumed['sessions']} earlier session(s), "
            f"{resumed['seconds']['wall']:.0f} s, on "
            f"{', '.join(resumed['machines'])})."
        )
    print(f"Wrote {out}/report.json, report.md and plots/*.png.")
    if args.robustbench_json:
        entry = leaderboard.robustbench_entry(report)
        leaderboard.write_entry(entry, args.robustbench_json, overwrite=True)
        print(f"Wrote the RobustBench entry {args.robustbench_json}.")
    print(f"TensorBoard: tensorboard --logdir {out}/tb")
