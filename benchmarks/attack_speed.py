"""Attack speed: images/s of our evaluation path vs CleverHans called eagerly.

Both sides run the same CleverHans 4 functions on the same model and batch
(random-weight model, CIFAR-shaped images, batch 128, L-infinity radius
8/255, PGD-20 with step 2/255 and a random start, FGSM): "eager" calls
`projected_gradient_descent` / `fast_gradient_method` directly with the
Keras model, as CleverHans' tutorials do; "ours" is
`keras_damped.robustness.make_attack`, which `keras-damped evaluate` uses
(one traced TensorFlow graph per attack, logits via `logits_fn`), in graph
mode and with XLA. The first call (tracing, compiling) is excluded; the
three run interleaved, one call each per round for `--repeats` rounds in a
rotating order; images/s come from the median call and each speed-up is
the median of the per-round ratios (range in brackets). Target: ours
>= 1.5x eager for PGD-20.

`apgd_ce` compares AutoAttack's APGD-CE with our PGD (graph) at the same
number of iterations (`--apgd-steps`, AutoAttack's 100) on the same batch,
as iterations per second (target: >= 0.9x); APGD evaluates one gradient
more than its iterations (at its random start), as in the paper. The
labels are the model's own predictions and the radius is 0.5/255, so every
example starts correct and (as the table's `fooled` column shows) stays so:
APGD, which stops working on an example once it is misclassified, does the
full work here.

`--onednn both` answers another question, what TensorFlow's oneDNN
kernels do for an evaluation: the same measurement in fresh processes with
oneDNN off and on (TF_ENABLE_ONEDNN_OPTS), alternating over `--rounds`;
the table gives each state's images/s of our attacks and the on/off ratio
(median over rounds). With `--emulate-avx2` this machine computes as an
AVX2-only CPU (see benchmarks/_common.py), where TensorFlow's own default is
off and keras_damped turns it on: the before and after of that switch.

    python benchmarks/attack_speed.py
    python benchmarks/attack_speed.py --quick
    python benchmarks/attack_speed.py --onednn both --emulate-avx2
"""

import json
import os
import subprocess
import sys
import tempfile

import _common

EPS = 8 / 255
APGD_EPS = 0.5 / 255


def eager_attack(name, model, steps):
    import numpy as np
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.attacks.projected_gradient_descent import (
        projected_gradient_descent,
    )

    from keras_damped.robustness import Budget

    def model_fn(x):
        return model(x, training=False)

    common = {"clip_min": 0.0, "clip_max": 1.0, "sanity_checks": False}
    if name == "fgsm":
        return lambda x, y: fast_gradient_method(
            model_fn, x, EPS, np.inf, y=y, **common
        )
    return lambda x, y: projected_gradient_descent(
        model_fn,
        x,
        EPS,
        Budget().step_size,
        steps,
        np.inf,
        y=y,
        rand_init=True,
        rand_minmax=EPS,
        **common,
    )


def our_attack(name, model, steps, jit):
    from keras_damped.robustness import Budget
    from keras_damped.robustness import logits_fn
    from keras_damped.robustness import make_attack

    budget = Budget(steps=steps, jit_compile=jit)
    attack = make_attack(name, logits_fn(model), budget)
    return lambda x, y: attack.perturb(x, y, EPS, (0, 0))


def measure(fns, x, y, repeats):
    """Interleaved rounds of one call of each attack in `fns` (after a warm-up)."""
    for fn in fns.values():
        fn(x, y)
    return _common.interleaved(
        {key: (lambda fn=fn: fn(x, y).numpy()) for key, fn in fns.items()},
        repeats,
        1,
    )


def apgd_vs_pgd(model, x, steps, repeats):
    """Iterations per second of APGD-CE and of our PGD, same batch and steps."""
    import numpy as np
    import tensorflow as tf

    from keras_damped.robustness import Budget
    from keras_damped.robustness import logits_fn
    from keras_damped.robustness import make_attack

    fn = logits_fn(model)
    y = tf.argmax(fn(x), -1, output_type=tf.int32)
    pgd = make_attack("pgd", fn, Budget(steps=steps))
    apgd = make_attack("apgd_ce", fn, Budget(apgd_steps=steps))
    fns = {
        "pgd_graph": lambda x, y: pgd.perturb(x, y, APGD_EPS, (0, 0)),
        "apgd_ce": lambda x, y: tf.constant(apgd(x, y, APGD_EPS).x_adv),
    }
    times = measure(fns, x, y, repeats)
    fooled = 1 - float(np.mean(apgd(x, y, APGD_EPS).robust))
    row = {"attack": f"APGD-CE-{steps} vs PGD-{steps}", "fooled": round(fooled, 3)}
    for key, per_call in times.items():
        row[f"{key}_it_per_s"] = round(steps * len(x) / _common.median(per_call), 1)
    row["apgd_vs_pgd"], row["apgd_vs_pgd_range"] = _common.ratio(
        times, "pgd_graph", "apgd_ce"
    )
    return row


def speedup_cell(row, key):
    low, high = row[f"{key}_speedup_range"]
    return f"{row[f'{key}_speedup']}x ({low}-{high})"


def onednn_before_after(args):
    """Our attacks' images/s with oneDNN off and on, each state in fresh
    processes, the states alternating over `args.rounds`."""
    argv = ["--model", args.model, "--steps", str(args.steps)]
    argv += ["--repeats", str(args.repeats), "--batch-size", str(args.batch_size)]
    attacks = [a for a in args.attacks.split(",") if a != "apgd_ce"]
    argv += ["--attacks", ",".join(attacks)]
    env = dict(os.environ)
    if args.emulate_avx2:
        env = _common.emulated_avx2_env(env)
    runs = {"0": [], "1": []}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            for state in ("0", "1") if r % 2 == 0 else ("1", "0"):
                out = os.path.join(folder, f"r{r}_{state}")
                command = [sys.executable, __file__, *argv, "--out", out]
                result = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    env=dict(env, TF_ENABLE_ONEDNN_OPTS=state),
                )
                if result.returncode != 0:
                    raise SystemExit(f"{command} failed:\n{result.stderr[-3000:]}")
                with open(out + ".json") as f:
                    runs[state].append(json.load(f))
                print(f"round {r + 1}: oneDNN {'on' if state == '1' else 'off'}")
    rows = []
    for i, row in enumerate(runs["0"][0]["rows"]):
        out = {"attack": row["attack"]}
        for key in ("ours_graph", "ours_xla", "eager_cleverhans"):
            off = [run["rows"][i][key] for run in runs["0"]]
            on = [run["rows"][i][key] for run in runs["1"]]
            ratios = [b / a for a, b in zip(off, on)]
            out[key] = {
                "off": round(_common.median(off), 1),
                "on": round(_common.median(on), 1),
                "on_vs_off": round(_common.median(ratios), 3),
                "range": [round(min(ratios), 3), round(max(ratios), 3)],
            }
        rows.append(out)
    record = {
        "machine": _common.machine(),
        "emulated_avx2": args.emulate_avx2,
        "onednn_isa": _common.onednn_isa("tensorflow", env),
        "settings": {
            "model": args.model,
            "batch_size": args.batch_size,
            "eps": "8/255",
            "rounds": args.rounds,
            "repeats": args.repeats,
        },
        "onednn_states": {
            "off": runs["0"][0]["machine"]["onednn"],
            "on": runs["1"][0]["machine"]["onednn"],
        },
        "rows": rows,
    }
    table = _common.markdown_table(
        ["attack", "path", "oneDNN off img/s", "oneDNN on img/s", "on / off"],
        [
            [
                r["attack"],
                label,
                r[key]["off"],
                r[key]["on"],
                f"{r[key]['on_vs_off']}x ({r[key]['range'][0]}-{r[key]['range'][1]})",
            ]
            for r in rows
            for key, label in (
                ("ours_graph", "ours (graph)"),
                ("ours_xla", "ours (XLA)"),
                ("eager_cleverhans", "eager CleverHans"),
            )
        ],
    )
    cpu = "an emulated AVX2-only CPU" if args.emulate_avx2 else "this CPU"
    title = (
        f"Attack speed with TensorFlow's oneDNN off and on, on {cpu}: "
        f"{args.model}, batch {args.batch_size}, eps 8/255, {args.rounds} rounds "
        f"of fresh processes (states alternating), {args.repeats} calls each; "
        f"ratio = median of per-round ratios (min-max); oneDNN ISA "
        f"{record['onednn_isa']}"
    )
    _common.save(args.out, record, table, title)


def main():
    p = _common.parser(__doc__.splitlines()[0], "attack_speed")
    p.add_argument("--model", default="in_resnet20")
    p.add_argument("--steps", type=int, default=20, help="PGD iterations")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument(
        "--apgd-steps", type=int, default=100, help="iterations of APGD-CE vs PGD"
    )
    p.add_argument("--attacks", default="pgd,fgsm,apgd_ce")
    p.add_argument(
        "--onednn",
        choices=("default", "both"),
        default="default",
        help="both: our attacks with TensorFlow's oneDNN off and on",
    )
    p.add_argument("--rounds", type=int, default=2, help="rounds of --onednn both")
    p.add_argument(
        "--emulate-avx2",
        action="store_true",
        help="compute as an AVX2-only CPU (with --onednn both)",
    )
    args = p.parse_args()
    if args.quick:
        args.repeats = 2
        args.rounds = 1
    for name in ("steps", "apgd_steps", "repeats", "batch_size"):
        _common.positive(name, getattr(args, name))
    attacks = args.attacks.split(",")
    known = ["pgd", "fgsm", "apgd_ce"]
    bad = [a for a in attacks if a not in known]
    if bad:
        raise SystemExit(f"Unknown --attacks {bad}. Expected some of {known}.")
    if args.onednn == "both":
        _common.positive("rounds", args.rounds)
        return onednn_before_after(args)
    if args.emulate_avx2:
        raise SystemExit("--emulate-avx2 goes with --onednn both.")
    tf = _common.start_tensorflow()
    import keras

    from keras_damped import create_model
    from keras_damped import list_models

    if args.model not in list_models():
        raise SystemExit(
            f"Unknown model. Expected one of {list_models()}. "
            f"Received: --model {args.model}"
        )
    keras.utils.set_random_seed(0)
    model = create_model(args.model)
    x, y = _common.synthetic_batch(args.batch_size)
    x, y = tf.constant(x), tf.constant(y)
    rows, apgd_rows = [], []
    for name in attacks:
        if name == "apgd_ce":
            apgd_rows.append(apgd_vs_pgd(model, x, args.apgd_steps, args.repeats))
            print(apgd_rows[-1], flush=True)
            continue
        label = f"PGD-{args.steps}" if name == "pgd" else "FGSM"
        fns = {
            "eager_cleverhans": eager_attack(name, model, args.steps),
            "ours_graph": our_attack(name, model, args.steps, False),
            "ours_xla": our_attack(name, model, args.steps, True),
        }
        times = measure(fns, x, y, args.repeats)
        row = {"attack": label}
        for key, per_call in times.items():
            row[key] = round(len(x) / _common.median(per_call), 1)
        for key in ("ours_graph", "ours_xla"):
            # speed-up = eager seconds / ours seconds, per round
            speedup, spread = _common.ratio(times, "eager_cleverhans", key)
            row[f"{key}_speedup"], row[f"{key}_speedup_range"] = speedup, spread
        print(row, flush=True)
        rows.append(row)
    record = {
        "machine": _common.machine(),
        "settings": {
            "model": args.model,
            "batch_size": args.batch_size,
            "eps": "8/255",
            "repeats": args.repeats,
            "apgd_steps": args.apgd_steps,
        },
        "rows": rows,
        "apgd_rows": apgd_rows,
    }
    table = _common.markdown_table(
        [
            "attack",
            "eager CleverHans img/s",
            "ours (graph) img/s",
            "speed-up",
            "ours (XLA) img/s",
            "speed-up",
        ],
        [
            [
                r["attack"],
                r["eager_cleverhans"],
                r["ours_graph"],
                speedup_cell(r, "ours_graph"),
                r["ours_xla"],
                speedup_cell(r, "ours_xla"),
            ]
            for r in rows
        ],
    )
    if apgd_rows:
        table += "\n\n" + _common.markdown_table(
            [
                "same batch, eps 0.5/255",
                "PGD (graph) it/s",
                "APGD-CE it/s",
                "APGD-CE / PGD",
                "fooled by APGD",
            ],
            [
                [
                    r["attack"],
                    r["pgd_graph_it_per_s"],
                    r["apgd_ce_it_per_s"],
                    f"{r['apgd_vs_pgd']}x ({r['apgd_vs_pgd_range'][0]}-"
                    f"{r['apgd_vs_pgd_range'][1]})",
                    f"{100 * r['fooled']:.1f}%",
                ]
                for r in apgd_rows
            ],
        )
    title = (
        f"Attack speed: {args.model}, batch {args.batch_size}, eps 8/255, "
        f"{args.repeats} interleaved rounds after one warm-up call; speed-up = "
        "median of per-round ratios (min-max in brackets); it/s = "
        "example-iterations per second"
    )
    _common.save(args.out, record, table, title)


if __name__ == "__main__":
    main()
