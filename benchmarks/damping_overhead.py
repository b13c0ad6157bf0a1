"""Damping overhead: training-step time of each damped ResNet / plain ResNet.

For each depth, builds `resnet<depth>` (plain `x + f(x)`), `in_resnet<depth>`
and `lambda_in_resnet<depth>`: the same network except for the merge. All
three are compiled and warmed up, then timed in interleaved rounds (each
round runs `--steps` training steps of every model, in a rotating order), so
that drifts in the machine's speed hit all three alike. The overhead of a
damped model is the median over rounds of its round time divided by the plain
model's in the same round. The target is <= 1.03. Each depth is measured in
a fresh process.

    python benchmarks/damping_overhead.py            # every preset depth
    python benchmarks/damping_overhead.py --quick    # depth 14, 2 rounds
"""

import _common

VARIANTS = ("", "in_", "lambda_in_")


def measure_depth(depth, args, jit):
    import keras

    keras.config.set_dtype_policy(args.precision)
    try:
        models = {}
        for prefix in VARIANTS:
            keras.utils.set_random_seed(0)
            name = f"{prefix}resnet{depth}"
            models[name] = _common.compile_for_training(
                _common.resnet(prefix, depth, input_shape=(args.size, args.size, 3)),
                jit,
            )
    finally:
        keras.config.set_dtype_policy("float32")
    x, y = _common.synthetic_batch(args.batch_size, (args.size, args.size, 3))
    for model in models.values():
        for _ in range(2):  # compiles, then one step at speed
            model.train_on_batch(x, y)
    rounds = _common.interleaved(
        {
            name: (lambda m=model: m.train_on_batch(x, y))
            for name, model in models.items()
        },
        args.rounds,
        args.steps,
    )
    names = list(models)
    row = {
        "depth": depth,
        "step_ms": {n: round(1000 * _common.median(t), 1) for n, t in rounds.items()},
    }
    for name in names[1:]:
        prefix = name.split("resnet")[0]
        row[f"{prefix}ratio"], row[f"{prefix}ratio_range"] = _common.ratio(
            rounds, name, names[0]
        )
    return row


def main():
    p = _common.parser(__doc__.splitlines()[0], "damping_overhead")
    p.add_argument(
        "--depths", default="20,32,44,56,110,164", help="comma-separated 6n+2"
    )
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=2, help="training steps per round")
    p.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
    )
    p.add_argument("--jit-compile", default="off", choices=("on", "off"))
    p.add_argument("--size", type=int, default=32, help="image height and width")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="measure the depths in this process and print them as JSON "
        "(what each depth's fresh process runs)",
    )
    args = p.parse_args()
    if args.quick:
        args.depths, args.rounds, args.steps = "14", 2, 2
    depths = []
    for part in args.depths.split(","):
        if not part.strip().isdigit() or (int(part) - 2) % 6 or int(part) < 8:
            raise SystemExit(
                f"Each depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, "
                f"...). Received: --depths {args.depths}"
            )
        depths.append(int(part))
    for name in ("rounds", "steps", "batch_size", "size"):
        _common.positive(name, getattr(args, name))
    _common.start_tensorflow()
    jit = args.jit_compile == "on"
    if args.in_process:
        for depth in depths:
            _common.print_row(measure_depth(depth, args, jit))
        return
    rows = []
    for depth in depths:
        argv = ["--in-process", "--depths", str(depth)]
        argv += ["--jit-compile", args.jit_compile]
        for name in ("rounds", "steps", "precision", "batch_size", "size"):
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        (row,) = _common.in_fresh_process(__file__, argv)
        print(
            f"depth {depth}: in_ {row['in_ratio']}, "
            f"lambda_in_ {row['lambda_in_ratio']}",
            flush=True,
        )
        rows.append(row)
    record = {
        "machine": _common.machine(),
        "settings": {
            "batch_size": args.batch_size,
            "precision": args.precision,
            "jit_compile": jit,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "image_size": args.size,
        },
        "rows": rows,
    }
    table = _common.markdown_table(
        [
            "depth",
            "plain ms/step",
            "in_ ms/step",
            "lambda_in_ ms/step",
            "in_ / plain",
            "lambda_in_ / plain",
        ],
        [
            [
                r["depth"],
                *r["step_ms"].values(),
                f"{r['in_ratio']} ({r['in_ratio_range'][0]}-{r['in_ratio_range'][1]})",
                f"{r['lambda_in_ratio']} ({r['lambda_in_ratio_range'][0]}-"
                f"{r['lambda_in_ratio_range'][1]})",
            ]
            for r in rows
        ],
    )
    title = (
        f"Damping overhead: training step, batch {args.batch_size}, "
        f"{args.precision}, {'XLA' if jit else 'graph mode'}; ratio = median over "
        f"{args.rounds} interleaved rounds (min-max in brackets)"
    )
    _common.save(args.out, record, table, title)


if __name__ == "__main__":
    main()
