"""Speed-ups the targets are about, each measured as an interleaved pair.

Each group builds its training setups in one process, warms them up and
times them in alternating rounds (as damping_overhead.py does), then
reports for each pair the median over rounds of the training-step speed-up
(images/s of the first over the second) with its range:

- `in_resnet110` float32 vs a plain pre-activation ResNet-110 written with
  Keras layers only (tests/plain_resnet.py): target >= 1; and, in the same
  rounds, the library's undamped `resnet110` vs the same plain network,
  which separates the library's cost from the damping's;
- `in_resnet110` mixed_bfloat16 vs float32: target >= 1.5 (aim 2);
- `in_resnet110` float32 with XLA vs graph mode: decides `--jit-compile auto`;
- `in_resnet110` with the reference's symmetric padding (an explicit pad
  before each strided 3x3 convolution) vs TensorFlow's "same" (what models
  saved before the padding fix use): the pad's cost, target >= 0.99.

    python benchmarks/speedups.py
    python benchmarks/speedups.py --quick      # the same pairs on ResNet-14
    python benchmarks/speedups.py --only padding --rounds 10   # one pair
"""

import _common

IN_F32 = ("in", "float32", False)
# (pairs as (title, first, second) indices into setups, setups)
GROUPS = (
    (
        (
            ("library vs plain Keras, float32", 0, 2),
            ("undamped library vs plain Keras, float32", 1, 2),
        ),
        (IN_F32, ("plain", "float32", False), ("keras", "float32", False)),
    ),
    (
        (("mixed_bfloat16 vs float32", 0, 1),),
        (("in", "mixed_bfloat16", False), IN_F32),
    ),
    ((("XLA vs graph mode, float32", 0, 1),), (("in", "float32", True), IN_F32)),
    (
        (("symmetric vs same padding, float32", 0, 1),),
        (IN_F32, ("in_same", "float32", False)),
    ),
)


def build(kind, precision, jit, depth):
    import keras

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    try:
        if kind == "keras":
            model = _common.plain_keras_resnet(depth)
        elif kind == "in_same":
            model = _common.resnet("in_", depth, padding="same")
        else:
            model = _common.resnet("in_" if kind == "in" else "", depth)
    finally:
        keras.config.set_dtype_policy("float32")
    return _common.compile_for_training(model, jit)


def label(kind, precision, jit, depth):
    prefix = {"keras": "keras_", "in": "in_", "in_same": "in_", "plain": ""}[kind]
    padding = " same-padding" if kind == "in_same" else ""
    return f"{prefix}resnet{depth}{padding} {precision}{' XLA' if jit else ''}"


def main():
    p = _common.parser(__doc__.splitlines()[0], "speedups")
    p.add_argument("--depth", type=int, default=110)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="training steps per round")
    p.add_argument(
        "--only",
        default=None,
        help="measure only the pairs whose title contains this text (e.g. padding)",
    )
    args = p.parse_args()
    if args.quick:
        args.depth, args.rounds, args.steps = 14, 2, 2
    if (args.depth - 2) % 6 or args.depth < 8:
        raise SystemExit(f"--depth must be 6n+2 with n >= 1. Received: {args.depth}")
    for name in ("rounds", "steps", "batch_size"):
        _common.positive(name, getattr(args, name))
    _common.start_tensorflow()
    import keras

    x, y = _common.synthetic_batch(args.batch_size)
    rows = []
    for pairs, setups in GROUPS:
        pairs = [p for p in pairs if args.only is None or args.only in p[0]]
        if not pairs:
            continue
        models = {
            label(*setup, args.depth): build(*setup, args.depth) for setup in setups
        }
        for model in models.values():
            for _ in range(2):
                model.train_on_batch(x, y)
        times = _common.interleaved(
            {n: (lambda m=m: m.train_on_batch(x, y)) for n, m in models.items()},
            args.rounds,
            args.steps,
        )
        names = list(models)
        for title, first, second in pairs:
            first_name, second_name = names[first], names[second]
            # Images/s of the first over the second = step time of the second
            # over the first.
            speedup, (low, high) = _common.ratio(times, second_name, first_name)
            row = {
                "pair": title,
                "first": first_name,
                "second": second_name,
                "first_images_per_s": round(
                    args.batch_size / _common.median(times[first_name]), 1
                ),
                "second_images_per_s": round(
                    args.batch_size / _common.median(times[second_name]), 1
                ),
                "speedup": speedup,
                "speedup_range": [low, high],
            }
            print(row, flush=True)
            rows.append(row)
        del models
        keras.backend.clear_session()
    record = {
        "machine": _common.machine(),
        "settings": {
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
        },
        "rows": rows,
    }
    table = _common.markdown_table(
        ["pair", "first", "img/s", "second", "img/s", "speed-up (range)"],
        [
            [
                r["pair"],
                r["first"],
                r["first_images_per_s"],
                r["second"],
                r["second_images_per_s"],
                f"{r['speedup']}x ({r['speedup_range'][0]}-{r['speedup_range'][1]})",
            ]
            for r in rows
        ],
    )
    title = (
        f"Speed-ups: training steps, batch {args.batch_size}, median over "
        f"{args.rounds} interleaved rounds of {args.steps} steps (min-max)"
    )
    _common.save(args.out, record, table, title)


if __name__ == "__main__":
    main()
