"""Precision check: does mixed precision train as well as float32, and how fast?

Trains the same model on real Fashion-MNIST (Debian's offline copy) with the
same seed, data order and schedule, once per precision, through
`keras_damped.training.train` (what `keras-damped train` runs), and reports
the test accuracy, its difference from float32 and the seconds per epoch.
This is the measurement behind `--precision auto`, which must pick the
fastest precision whose accuracy is within one point of float32.

    python benchmarks/precision_check.py
    python benchmarks/precision_check.py --quick
"""

import tempfile
import time

import _common


def run(precision, args, folder):
    from keras_damped.training import TrainConfig
    from keras_damped.training import train

    config = TrainConfig(
        model=args.model,
        dataset="fashion_mnist",
        run_dir=f"{folder}/{precision}",
        epochs=args.epochs,
        batch_size=args.batch_size,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        precision=precision,
        jit_compile="off",
        seed=0,
        verbose=0,
    )
    begin = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - begin
    return {
        "precision": precision,
        "test_accuracy": round(100 * result.history["val_accuracy"][-1], 2),
        "train_accuracy": round(100 * result.history["accuracy"][-1], 2),
        "seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / args.epochs, 1),
    }


def main():
    p = _common.parser(__doc__.splitlines()[0], "precision_check")
    p.add_argument("--model", default="in_resnet20")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-limit", type=int, default=20000, help="training images")
    p.add_argument("--test-limit", type=int, default=10000, help="test images")
    p.add_argument("--precisions", default="float32,mixed_bfloat16")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.train_limit, args.test_limit = 1, 256, 256
    for name in ("epochs", "train_limit", "test_limit", "batch_size"):
        _common.positive(name, getattr(args, name))
    precisions = args.precisions.split(",")
    valid = ("float32", "mixed_bfloat16", "mixed_float16")
    if precisions[0] != "float32" or any(p not in valid for p in precisions):
        raise SystemExit(
            f"--precisions must start with float32 (the reference) and name some of "
            f"{valid}. Received: --precisions {args.precisions}"
        )
    _common.start_tensorflow()
    with tempfile.TemporaryDirectory(prefix="keras_damped_precision_") as folder:
        rows = [run(p, args, folder) for p in precisions]
    reference = rows[0]
    for row in rows:
        row["accuracy_minus_float32"] = round(
            row["test_accuracy"] - reference["test_accuracy"], 2
        )
        row["speedup"] = round(reference["seconds"] / row["seconds"], 2)
    record = {
        "machine": _common.machine(),
        "settings": {
            "model": args.model,
            "epochs": args.epochs,
            "train_images": args.train_limit,
            "test_images": args.test_limit,
            "batch_size": args.batch_size,
        },
        "rows": rows,
    }
    table = _common.markdown_table(
        [
            "precision",
            "test accuracy %",
            "vs float32 (points)",
            "s/epoch",
            "speed-up",
        ],
        [
            [
                r["precision"],
                r["test_accuracy"],
                f"{r['accuracy_minus_float32']:+.2f}",
                r["seconds_per_epoch"],
                f"{r['speedup']}x",
            ]
            for r in rows
        ],
    )
    title = (
        f"Precision check: {args.model} on {args.train_limit} Fashion-MNIST training "
        f"images, {args.epochs} epochs, batch {args.batch_size}, tested on "
        f"{args.test_limit} (wall time includes data loading and compilation)"
    )
    _common.save(args.out, record, table, title)


if __name__ == "__main__":
    main()
