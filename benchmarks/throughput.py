"""Training and inference throughput (images/s) of the presets.

Each row builds a model for CIFAR-shaped input (32x32x3, 10 classes),
compiles it as `keras-damped train` does (paper SGD, cross-entropy) in one
precision, with or without XLA, and times training steps
(`train_on_batch`) and inference steps (`predict_on_batch`) on one
synthetic batch, the rows of each model in a fresh process (many models
trained one after another in one process slow down; `--quick`, a smoke
run, puts all its rows in one). Two warm-up calls
(the first compiles) are excluded; a row reports the median of at least
two and at most `--steps` timed steps, stopping once `--seconds` have been
spent.
`keras_resnet<depth>` is a plain pre-activation ResNet written with Keras
layers only (tests/plain_resnet.py). Rows are single measurements, for
orders of magnitude; the ratios the targets are about are measured
interleaved by speedups.py.

The default plan depends on the machine: with a GPU every model in every
precision with and without XLA; on a CPU the ResNets in float32 and
mixed_bfloat16, graph mode, plus float16, XLA and ResNeXt-29 (float32,
batch 4: ~8 s per batch-4 training step here) rows that fit in 10 minutes.

    python benchmarks/throughput.py
    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py --models in_resnet56 --jit on,off
"""

import itertools
import time

import _common

RESNETS = [
    f"{prefix}resnet{depth}"
    for depth in (20, 56, 110)
    for prefix in ("", "in_", "lambda_in_")
]
RESNEXT = "resnext29_8x64d"
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def cpu_plan():
    plan = []
    for model in RESNETS:
        plan += [(model, p, False, None) for p in PRECISIONS[:2]]
        if model == "resnet20":
            plan.append((model, "mixed_float16", False, None))
        if model == "in_resnet110":
            plan.append((model, "float32", True, None))
    plan += [
        ("keras_resnet110", "float32", False, None),
        (RESNEXT, "float32", False, 4),
    ]
    return plan


def gpu_plan():
    models = RESNETS + ["keras_resnet110", RESNEXT]
    return [
        (m, p, j, None)
        for m, p, j in itertools.product(models, PRECISIONS, (True, False))
    ]


QUICK_PLAN = [
    ("resnet20", "float32", False, None),
    ("in_resnet20", "float32", False, None),
    ("in_resnet20", "mixed_bfloat16", False, None),
    ("in_resnet20", "float32", True, None),
]


def build(name, precision):
    import keras

    from keras_damped import create_model

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    try:
        if name.startswith("keras_resnet"):
            depth = int(name[len("keras_resnet") :])
            return _common.plain_keras_resnet(depth)
        return create_model(name)
    finally:
        keras.config.set_dtype_policy("float32")


def timed(fn, max_steps, budget_s):
    fn()
    fn()
    times, begin = [], time.perf_counter()
    while len(times) < max_steps and (
        len(times) < 2 or time.perf_counter() - begin < budget_s
    ):
        times.extend(_common.seconds(fn, 1))
    return _common.median(times), len(times)


def measure(name, precision, jit, batch_size, args):
    begin = time.perf_counter()
    model = _common.compile_for_training(build(name, precision), jit)
    x, y = _common.synthetic_batch(batch_size)
    train_s, train_n = timed(
        lambda: model.train_on_batch(x, y), args.steps, args.seconds
    )
    infer_s, infer_n = timed(
        lambda: model.predict_on_batch(x), args.steps, args.seconds / 2
    )
    row = {
        "model": name,
        "precision": precision,
        "jit_compile": jit,
        "batch_size": batch_size,
        "parameters": model.count_params(),
        "train_images_per_s": round(batch_size / train_s, 1),
        "train_ms_per_step": round(1000 * train_s, 1),
        "train_steps_timed": train_n,
        "inference_images_per_s": round(batch_size / infer_s, 1),
        "inference_steps_timed": infer_n,
        "row_seconds": round(time.perf_counter() - begin, 1),
    }
    return row


def in_fresh_process(rows, args):
    """Measures a few rows (one model's) in a new Python process."""
    argv = ["--steps", str(args.steps), "--seconds", str(args.seconds)]
    for model, precision, jit, batch in rows:
        jit = "on" if jit else "off"
        argv += ["--row", f"{model}:{precision}:{jit}:{batch or args.batch_size}"]
    measured = _common.in_fresh_process(__file__, argv)
    for row in measured:
        print(
            f"{row['model']:22s} {row['precision']:15s} "
            f"{'XLA' if row['jit_compile'] else 'graph':5s} "
            f"batch {row['batch_size']:3d}: "
            f"train {row['train_images_per_s']:8.1f} img/s, "
            f"inference {row['inference_images_per_s']:8.1f} img/s",
            flush=True,
        )
    return measured


def _find(rows, model, precision, jit):
    for row in rows:
        if (row["model"], row["precision"], row["jit_compile"]) == (
            model,
            precision,
            jit,
        ):
            return row["train_images_per_s"]
    return None


def summary(rows):
    """The ratios the issue's targets are about, where the rows exist."""
    pairs = {
        "in_resnet110 / keras_resnet110, float32 train": (
            ("in_resnet110", "float32", False),
            ("keras_resnet110", "float32", False),
        ),
        "in_resnet110 mixed_bfloat16 / float32 train": (
            ("in_resnet110", "mixed_bfloat16", False),
            ("in_resnet110", "float32", False),
        ),
        "in_resnet110 XLA / graph mode, float32 train": (
            ("in_resnet110", "float32", True),
            ("in_resnet110", "float32", False),
        ),
        "in_resnet110 XLA / graph mode, mixed_bfloat16 train": (
            ("in_resnet110", "mixed_bfloat16", True),
            ("in_resnet110", "mixed_bfloat16", False),
        ),
    }
    out = {}
    for label, (a, b) in pairs.items():
        top, bottom = _find(rows, *a), _find(rows, *b)
        if top and bottom:
            out[label] = round(top / bottom, 2)
    return out


def main():
    p = _common.parser(__doc__.splitlines()[0], "throughput")
    p.add_argument("--models", help="comma-separated; default: the machine's plan")
    p.add_argument(
        "--precisions", default=None, help=f"comma-separated of {PRECISIONS}"
    )
    p.add_argument("--jit", default=None, help="comma-separated of on, off")
    p.add_argument("--steps", type=int, default=6, help="most timed steps per row")
    p.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="stop timing a row's training steps after this (inference: half)",
    )
    p.add_argument(
        "--row",
        action="append",
        help="MODEL:PRECISION:on|off:BATCH (repeatable): measure these rows in "
        "this process and print them as JSON (what each fresh process runs)",
    )
    args = p.parse_args()
    _common.positive("steps", args.steps)
    _common.positive("batch_size", args.batch_size)
    tf = _common.start_tensorflow()
    from keras_damped import list_models

    if args.row:
        plan = [
            (model, precision, jit == "on", int(batch))
            for model, precision, jit, batch in (r.split(":") for r in args.row)
        ]
    elif args.models or args.precisions or args.jit:
        models = (args.models or "in_resnet20").split(",")
        precisions = (args.precisions or "float32").split(",")
        jits = (args.jit or "off").split(",")
        known = list_models() + [f"keras_resnet{d}" for d in (20, 32, 44, 56, 110)]
        for label, values, valid in (
            ("--models", models, known),
            ("--precisions", precisions, PRECISIONS),
            ("--jit", jits, ("on", "off")),
        ):
            bad = [v for v in values if v not in valid]
            if bad:
                raise SystemExit(
                    f"Unknown {label} value(s) {bad}. Expected some of {list(valid)}."
                )
        plan = [
            (m, pr, j == "on", None)
            for m, pr, j in itertools.product(models, precisions, jits)
        ]
    elif args.quick:
        plan = QUICK_PLAN
        args.steps = min(args.steps, 2)
    else:
        plan = gpu_plan() if tf.config.list_physical_devices("GPU") else cpu_plan()
    if args.row:
        for row in plan:
            _common.print_row(measure(*row, args))
        return
    rows = []
    if args.quick:  # a smoke run, not a measurement: its rows in one process
        groups = [plan]
    else:
        groups = [list(g) for _, g in itertools.groupby(plan, key=lambda r: r[0])]
    for group in groups:
        rows += in_fresh_process(group, args)
    record = {"machine": _common.machine(), "rows": rows, "summary": summary(rows)}
    table = _common.markdown_table(
        ["model", "precision", "compiled", "batch", "train img/s", "inference img/s"],
        [
            [
                r["model"],
                r["precision"],
                "XLA" if r["jit_compile"] else "graph",
                r["batch_size"],
                r["train_images_per_s"],
                r["inference_images_per_s"],
            ]
            for r in rows
        ],
    )
    if record["summary"]:
        table += "\n\n" + "\n".join(
            f"- {k}: {v}x" for k, v in record["summary"].items()
        )
    title = (
        "Throughput: images/s of training and inference steps on synthetic "
        "32x32x3 batches (median of timed steps, warm-up excluded)"
    )
    _common.save(args.out, record, table, title)


if __name__ == "__main__":
    main()
