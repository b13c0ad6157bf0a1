"""Our standard AutoAttack beside an independent one: torchattacks'.

The same saved `.keras` models, the same first `--examples` Fashion-MNIST
test images and radii (L-infinity 8/255, L2 0.5): ours
(`make_attack("autoattack", ..., Budget(norm=...))` at the standard budget,
TensorFlow) and torchattacks' standard sequence at the official budgets:
the `MultiAttack` of APGD-CE, APGD-T (9 targets), FAB-T (9 targets) and
Square (5,000 queries) that its `AutoAttack(version="standard")` builds,
each attack on the points the previous ones left robust, but with the
official 100 iterations for the three gradient attacks (its `AutoAttack`
passes no `steps`, so they would run their class default of 10). It runs
on the same model loaded under `KERAS_BACKEND=torch` (a Keras 3 model is
a `torch.nn.Module` there; a wrapper turns torchattacks' NCHW batches
into the model's NHWC).

Each side runs in a fresh process and saves its adversarial images; this
process then judges both sets the same way, with TensorFlow: an example
is broken when its adversarial image lies in the ball (and in [0, 1]) and
the model misclassifies it. The table gives each side's robust accuracy,
the per-example agreement, the examples only one side broke, and the wall
time of each side (its attack call, model loading excluded).

torchattacks is not a dependency of keras_damped: `pip install torch`,
then `pip install --no-deps torchattacks==3.5.1` (it declares torchvision,
which its attacks never import and whose newest wheels replace a CPU
PyTorch with a CUDA one). Each finished (model, norm,
side) is kept in `--cache` and reused: re-run the same command to resume.

    python benchmarks/autoattack_agreement.py --model runs/demo/resnet20/model.keras
    python benchmarks/autoattack_agreement.py --quick --model M.keras
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

RADII = {"linf": 8 / 255, "l2": 0.5}
SIDES = ("ours", "torchattacks")
TOLERANCE = {"linf": 1e-6, "l2": 1e-5}
STEPS = 100  # the official standard AutoAttack's iterations per gradient attack
# Cache names carry each side's budget, so no cached side of another is reused.
CACHE_TAG = {"ours": "ours", "torchattacks": f"torchattacks-steps{STEPS}"}


def load_images(examples):
    import numpy as np

    from keras_damped.data import load_arrays

    x, y = load_arrays("fashion_mnist", "test", limit=examples)
    return (x.astype("float32") / 255.0), y.astype(np.int64)


def run_ours(model_path, norm, x, y):
    _common.start_tensorflow()
    from keras_damped.models.loading import load_model_file
    from keras_damped.robustness import Budget
    from keras_damped.robustness import logits_fn
    from keras_damped.robustness import make_attack

    model = load_model_file(model_path)
    attack = make_attack("autoattack", logits_fn(model), Budget(norm=norm))
    started = time.perf_counter()
    result = attack(x, y.astype("int32"), RADII[norm], seed=(0, 0))
    seconds = time.perf_counter() - started
    return result.x_adv, seconds, result.cost


def run_torchattacks(model_path, norm, x, y):
    import torch
    import torchattacks

    from keras_damped.models.loading import load_model_file

    torch.set_num_threads(os.cpu_count())
    model = load_model_file(model_path)

    class ChannelsLast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            return self.inner(images.permute(0, 2, 3, 1), training=False)

    net = ChannelsLast(model).eval()
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    common = {
        "norm": {"linf": "Linf", "l2": "L2"}[norm],
        "eps": RADII[norm],
        "seed": 0,
        "n_restarts": 1,
    }
    classes = int(model.output_shape[-1])
    attack = torchattacks.MultiAttack(
        [
            torchattacks.APGD(net, loss="ce", steps=STEPS, **common),
            torchattacks.APGDT(net, n_classes=classes, steps=STEPS, **common),
            torchattacks.FAB(
                net, multi_targeted=True, n_classes=classes, steps=STEPS, **common
            ),
            torchattacks.Square(net, n_queries=5000, **common),
        ]
    )
    started = time.perf_counter()
    adv = attack(images, torch.from_numpy(y))
    seconds = time.perf_counter() - started
    return adv.permute(0, 2, 3, 1).detach().numpy(), seconds, None


def worker(args):
    """One side on one model and norm: saves its images and timing."""
    if args.worker == "torchattacks":  # before anything imports Keras
        os.environ["KERAS_BACKEND"] = "torch"
    import numpy as np

    x, y = load_images(args.examples)
    run = run_ours if args.worker == "ours" else run_torchattacks
    x_adv, seconds, cost = run(args.model[0], args.norm, x, y)
    np.save(args.part + ".npy", x_adv.astype("float32"))
    with open(args.part + ".json", "w") as f:
        json.dump({"seconds": round(seconds, 1), "cost": cost}, f)


def judge(model, norm, x, y, x_adv):
    """Per example: robust unless the adversarial image is in the ball and
    [0, 1] and misclassified (clean mistakes are never robust)."""
    import numpy as np

    change = (x_adv - x).reshape(len(x), -1)
    if norm == "linf":
        length = np.abs(change).max(-1)
    else:
        length = np.sqrt((change**2).sum(-1))
    valid = (length <= RADII[norm] * (1 + TOLERANCE[norm]) + 1e-6) & (
        (x_adv.min(axis=(1, 2, 3)) >= 0) & (x_adv.max(axis=(1, 2, 3)) <= 1)
    )
    clean = model.predict(x, verbose=0).argmax(-1) == y
    fooled = model.predict(x_adv, verbose=0).argmax(-1) != y
    return clean & ~(valid & fooled), valid


def measure(args, model_path, norm, cache, sides):
    """Both sides' robust masks and times for one model and norm."""
    import numpy as np

    from keras_damped.models.loading import load_model_file

    x, y = load_images(args.examples)
    model = load_model_file(model_path)
    row = {"model": Path(model_path).parent.name, "norm": norm}
    masks = {}
    for side in sides:
        stem = f"{row['model']}-{norm}-{CACHE_TAG[side]}-{args.examples}"
        part = str(cache / stem)
        if not os.path.isfile(part + ".json"):
            command = [sys.executable, __file__, "--worker", side]
            command += ["--model", model_path, "--norm", norm]
            command += ["--examples", str(args.examples), "--part", part]
            subprocess.run(command, check=True)
        with open(part + ".json") as f:
            record = json.load(f)
        masks[side], valid = judge(model, norm, x, y, np.load(part + ".npy"))
        row[f"{side}_robust"] = float(masks[side].mean())
        row[f"{side}_seconds"] = record["seconds"]
        row[f"{side}_invalid"] = int((~valid).sum())
        if record["cost"]:
            stages = record["cost"]["stages"]
            row["ours_forward_passes"] = record["cost"]["clean_passes"] + sum(
                s["forward_passes"] for s in stages.values()
            )
    row["clean"] = float((model.predict(x, verbose=0).argmax(-1) == y).mean())
    if "torchattacks" in masks:
        ours, theirs = masks["ours"], masks["torchattacks"]
        row["agreement"] = float((ours == theirs).mean())
        row["only_ours_broke"] = int((~ours & theirs).sum())
        row["only_theirs_broke"] = int((ours & ~theirs).sum())
    return row


def table(rows):
    headers = ["model", "threat model", "clean", "ours", "torchattacks"]
    headers += ["agreement", "only ours broke", "only theirs broke"]
    headers += ["ours (s)", "torchattacks (s)", "ours: forward passes"]
    cells = []
    for r in rows:
        theirs = "torchattacks_robust" in r

        def pct(key, row=r):
            return f"{100 * row[key]:.1f}" if key in row else "-"

        cells.append(
            [
                r["model"],
                "Linf 8/255" if r["norm"] == "linf" else "L2 0.5",
                pct("clean"),
                pct("ours_robust"),
                pct("torchattacks_robust"),
                pct("agreement"),
                r.get("only_ours_broke", "-"),
                r.get("only_theirs_broke", "-"),
                f"{r['ours_seconds']:.0f}",
                f"{r['torchattacks_seconds']:.0f}" if theirs else "-",
                r.get("ours_forward_passes", "-"),
            ]
        )
    return _common.markdown_table(headers, cells)


def _torchattacks_version():
    """torchattacks' and PyTorch's versions, or None when either is missing."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    try:
        return {"torchattacks": version("torchattacks"), "torch": version("torch")}
    except PackageNotFoundError:
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="a .keras file")
    p.add_argument(
        "--examples", type=int, help="the first N test images (200; --quick: 16)"
    )
    p.add_argument("--norms", default="linf,l2", help="comma-separated: linf, l2")
    p.add_argument("--quick", action="store_true", help="16 examples, L-infinity only")
    p.add_argument(
        "--cache",
        default=str(_common.REPO / "runs" / "autoattack_agreement"),
        help="folder of the finished sides (reused; default: %(default)s)",
    )
    p.add_argument("--out", default=str(_common.RESULTS / "autoattack_agreement"))
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--norm", help=argparse.SUPPRESS)
    p.add_argument("--part", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.examples is None:
        args.examples = 16 if args.quick else 200
    if args.quick:
        args.norms = "linf"
    norms = [n.strip() for n in args.norms.split(",")]
    unknown = [n for n in norms if n not in RADII]
    if unknown:
        p.error(f"--norms must be among {tuple(RADII)}. Received: {unknown}")
    missing = [m for m in args.model if not os.path.isfile(m)]
    if missing:
        p.error(f"no such model file: {missing}")
    _common.start_tensorflow()
    installed = _torchattacks_version()
    if installed is None:
        print(
            "torchattacks is not installed: only our side runs (pip install torch; "
            "pip install --no-deps torchattacks==3.5.1).",
            file=sys.stderr,
        )
    sides = SIDES if installed else ("ours",)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = [measure(args, m, n, cache, sides) for m in args.model for n in norms]
    record = {
        "examples": args.examples,
        "radii": RADII,
        "rows": rows,
        "machine": _common.machine(),
        "torchattacks": installed,
    }
    title = (
        f"Standard AutoAttack, ours vs torchattacks "
        f"{installed['torchattacks'] if installed else '(not installed)'} (its "
        f"standard sequence at the official {STEPS} iterations): robust "
        f"accuracy (%) on the first {args.examples} Fashion-MNIST test images, "
        "each side's adversarial images judged by the same TensorFlow model "
        "(agreement: examples with the same verdict); wall time of each "
        "side's attack call; our counted forward passes (a gradient's pass "
        "counted once)."
    )
    _common.save(args.out, record, table(rows), title)


if __name__ == "__main__":
    main()
