"""The `keras-damped` command."""

import argparse
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from keras_damped._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    if args.command == "models":
        print(_models_table(args.pattern or ["*"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
