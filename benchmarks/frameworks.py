"""The same training step in keras_damped and in other frameworks.

One In-ResNet (pre-activation CIFAR ResNet with damped identity blocks),
batch 128 of 32x32x3, the paper's SGD (momentum 0.9, coupled weight decay
1e-4), timed as

* `graph`: keras_damped on TensorFlow, graph mode (`--jit-compile off`);
* `xla`: keras_damped on TensorFlow with XLA (`--jit-compile on`);
* `jax`: the same keras_damped model on Keras' JAX backend (jit);
* `torch`: a PyTorch twin written here from docs/paper.md (NCHW, `padding=1`,
  `torch.optim.SGD(momentum=0.9, weight_decay=1e-4)`), the framework of
  the authors' code; measured only where PyTorch is installed
  (`pip install torch`; not a dependency of keras_damped).

Each configuration runs in a fresh process, in rounds whose order rotates;
a row is the median over rounds of each process's median of `--steps`
timed steps after 2 warm-up steps (the first compiles); its ratio to the
reference is the median of the per-round ratios. The oneDNN column is the
state TensorFlow ran with and why (keras_damped/_onednn.py); `--onednn
both` times graph and XLA with oneDNN off and on. `auto` marks the
configuration `--jit-compile auto` chooses on the CPU measured.
`--emulate-avx2` makes an AVX-512 machine compute as an AVX2-only one
(oneDNN, XLA and PyTorch capped to AVX2; the record keeps the instruction
set oneDNN reported in each framework, the proof that the cap took).

    python benchmarks/frameworks.py            # in_resnet20 and in_resnet110
    python benchmarks/frameworks.py --onednn both --emulate-avx2
    python benchmarks/frameworks.py --quick    # in_resnet14, 1 round, 2 steps
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import _common

CONFIGS = ("graph", "xla", "jax", "torch")
DEPTHS = {"in_resnet14": 14, "in_resnet20": 20, "in_resnet110": 110}


def keras_step(model_name, config, batch_size):
    import keras

    from keras_damped.training.schedules import add_weight_decay

    keras.utils.set_random_seed(0)
    model = _common.resnet("in_", DEPTHS[model_name])
    add_weight_decay(model, 1e-4)
    _common.compile_for_training(model, jit_compile=config != "graph")
    x, y = _common.synthetic_batch(batch_size)
    return lambda: model.train_on_batch(x, y)


def torch_step(depth, batch_size, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Block(nn.Module):
        """BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3; damped when identity."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.project = None
            if stride != 1 or cin != cout:
                self.project = nn.Sequential(
                    nn.BatchNorm2d(cin),
                    nn.ReLU(),
                    nn.Conv2d(cin, cout, 1, stride, bias=False),
                )
            self.k = None if self.project else nn.Parameter(torch.tensor(0.775))

        def forward(self, x):
            f = self.conv1(torch.relu(self.bn1(x)))
            f = self.conv2(torch.relu(self.bn2(f)))
            if self.project is not None:
                return f + self.project(x)
            return f + (1 - torch.relu(1 - self.k)) * x

    n = (depth - 2) // 6
    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False)], 16
    for stage, width in enumerate((16, 32, 64)):
        for i in range(n):
            stride = 2 if stage and i == 0 else 1
            # The first block of the network projects, as in the reference.
            block = Block(cin, width, stride)
            if stage == 0 and i == 0:
                block.project = nn.Sequential(
                    nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, width, 1, bias=False)
                )
                block.k = None
            layers.append(block)
            cin = width
    layers += [
        nn.BatchNorm2d(cin),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(cin, 10),
    ]
    net = nn.Sequential(*layers).train()
    optimizer = torch.optim.SGD(
        net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4
    )
    loss_fn = nn.CrossEntropyLoss()
    x, y = _common.synthetic_batch(batch_size)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(y).long()

    def step():
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()

    return step


def measure(model_name, config, args):
    """One configuration, in this process: ms per training step, and the
    oneDNN state TensorFlow ran with."""
    onednn = None
    if config == "torch":
        step = torch_step(DEPTHS[model_name], args.batch_size, os.cpu_count())
    else:
        if config != "jax":
            _common.start_tensorflow()
            from keras_damped._onednn import state

            onednn = state()
        step = keras_step(model_name, config.split("/")[0], args.batch_size)
    step()
    step()
    times = _common.seconds(step, args.steps)
    _common.print_row(
        {
            "model": model_name,
            "config": config,
            "ms": 1000 * statistics.median(times),
            "onednn": onednn,
        }
    )


def child_env(config, args):
    """The environment of one configuration's process: the backend, the
    AVX2 emulation, and for `graph/off`-style configurations the oneDNN
    state forced through TF_ENABLE_ONEDNN_OPTS."""
    env = dict(os.environ, KERAS_BACKEND="jax" if config == "jax" else "tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if args.emulate_avx2:
        env = _common.emulated_avx2_env(env)
    if "/" in config:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if config.endswith("/on") else "0"
    return env


def in_fresh_process(model_name, config, args):
    command = [sys.executable, __file__, "--row", f"{model_name}:{config}"]
    command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    result = subprocess.run(
        command, capture_output=True, text=True, env=child_env(config, args)
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    for line in result.stdout.splitlines():
        if line.startswith(_common.ROW_MARK):
            return json.loads(line[len(_common.ROW_MARK) :])
    raise SystemExit(f"{' '.join(command)} printed no row")


def configurations(args):
    """The configurations to time: TensorFlow graph and XLA (in both oneDNN
    states with `--onednn both`), JAX, and PyTorch where it is installed;
    `--configs` keeps some of them."""
    kinds = args.configs.split(",") if args.configs else list(CONFIGS)
    unknown = [k for k in kinds if k not in CONFIGS]
    if unknown:
        raise SystemExit(
            f"Unknown --configs {unknown}. Expected some of {list(CONFIGS)}."
        )
    configs = []
    for kind in kinds:
        if kind in ("graph", "xla") and args.onednn == "both":
            configs += [f"{kind}/off", f"{kind}/on"]
        elif kind != "torch" or importlib.util.find_spec("torch") is not None:
            configs.append(kind)
    return configs


def auto_choice():
    """(`--jit-compile auto`'s configuration, its rule) with the oneDNN state
    keras_damped gives TensorFlow on the CPU measured (an emulated AVX2 one
    included: there keras_damped turns oneDNN on)."""
    from keras_damped.training.loop import _jit_decision

    xla, rule = _jit_decision("auto", onednn=_default_onednn_enabled())
    return "xla" if xla else "graph", rule


def onednn_cell(row):
    """The oneDNN state: forced by this benchmark (`graph/on`, ...), or as
    keras_damped left it, with the reason."""
    state = row.get("onednn")
    if state is None:
        return "n/a"
    value = "on" if state["enabled"] else "off"
    if "/" in row["config"]:
        return f"{value} (forced)"
    return f"{value} ({state['reason']})"


def main():
    p = _common.parser(__doc__.splitlines()[0], "frameworks")
    p.add_argument("--models", default="in_resnet20,in_resnet110")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=8, help="timed steps per process")
    p.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated, some of {','.join(CONFIGS)} (default: all; "
        "torch where it is installed)",
    )
    p.add_argument(
        "--onednn",
        choices=("default", "both"),
        default="default",
        help="TensorFlow's oneDNN state: as keras_damped leaves it (default), "
        "or each TensorFlow configuration with oneDNN off and on",
    )
    p.add_argument(
        "--emulate-avx2",
        action="store_true",
        help="compute as an AVX2-only CPU: oneDNN (TensorFlow's and "
        "PyTorch's), XLA and PyTorch's kernels capped to AVX2",
    )
    p.add_argument("--row", help=argparse.SUPPRESS)  # model:config, one process
    args = p.parse_args()
    if args.row:
        model_name, config = args.row.split(":")
        measure(model_name, config, args)
        return
    models = args.models.split(",")
    unknown = [m for m in models if m not in DEPTHS]
    if unknown:
        p.error(f"unknown --models {unknown}; expected names among {list(DEPTHS)}")
    if args.quick:
        models, args.rounds, args.steps = ["in_resnet14"], 1, 2
    configs = configurations(args)
    _common.start_tensorflow()
    auto, rule = auto_choice()
    env = child_env("graph", args)
    isa = {
        fw: _common.onednn_isa(fw, env)
        for fw in ("tensorflow", "torch")
        if fw == "tensorflow" or "torch" in configs
    }
    runs = {(m, c): [] for m in models for c in configs}
    begin = time.perf_counter()
    for r in range(args.rounds):
        for model_name in models:
            order = configs[r % len(configs) :] + configs[: r % len(configs)]
            for config in order:
                runs[model_name, config].append(
                    in_fresh_process(model_name, config, args)
                )
                print(
                    f"round {r + 1}: {model_name} {config} "
                    f"{runs[model_name, config][-1]['ms']:.0f} ms/step",
                    flush=True,
                )
    reference = "torch" if "torch" in configs else configs[0]
    rows, table = [], []
    for model_name in models:
        for config in configs:
            ms = [run["ms"] for run in runs[model_name, config]]
            ref = [run["ms"] for run in runs[model_name, reference]]
            ratios = [a / b for a, b in zip(ref, ms)]
            row = {
                "model": model_name,
                "config": config,
                "onednn": runs[model_name, config][-1]["onednn"],
                "auto": _is_auto(config, auto, runs[model_name, config][-1]),
                "images_per_s": round(
                    args.batch_size * 1000 / statistics.median(ms), 1
                ),
                "vs_reference": round(statistics.median(ratios), 3),
                "vs_reference_range": [round(min(ratios), 3), round(max(ratios), 3)],
                "ms_per_step_by_round": ms,
            }
            rows.append(row)
            low, high = row["vs_reference_range"]
            table.append(
                [
                    model_name,
                    config.split("/")[0] + (" (auto)" if row["auto"] else ""),
                    onednn_cell(row),
                    f"{row['images_per_s']:.1f}",
                    f"{row['vs_reference']:.2f}x ({low:.2f}-{high:.2f})",
                ]
            )
    headers = ["model", "configuration", "oneDNN", "img/s", f"vs {reference}"]
    record = {
        "machine": _common.machine(),
        "emulated_avx2": args.emulate_avx2,
        "onednn_isa": isa,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "steps": args.steps,
        "reference": reference,
        "auto": auto,
        "auto_rule": rule,
        "torch": _torch_version(),
        "seconds": round(time.perf_counter() - begin, 1),
        "rows": rows,
    }
    cpu = "emulated AVX2-only CPU" if args.emulate_avx2 else "this CPU"
    _common.save(
        args.out,
        record,
        _common.markdown_table(headers, table),
        f"Training throughput by framework on {cpu} (ratio to {reference}: "
        "median over rounds of the per-round ratio, min-max in brackets); "
        f"oneDNN ISA: {isa}; auto: {rule}",
    )


def _is_auto(config, auto, run):
    """Whether `config` is what `--jit-compile auto` runs: its mode with the
    oneDNN state keras_damped gives TensorFlow on this CPU."""
    mode = config.split("/")[0]
    if mode != auto:
        return False
    if "/" not in config:
        return True
    return run["onednn"]["enabled"] == _default_onednn_enabled()


def _default_onednn_enabled():
    """The oneDNN state keras_damped leaves TensorFlow in here (this parent
    process applies the switch with no user setting, or the user's)."""
    from keras_damped._onednn import state

    return state()["enabled"]


def _torch_version():
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
