"""What the CPU benchmarks share: the machine record, timing and tables.

Every benchmark times whole training (or inference, or attack) steps on
synthetic CIFAR-shaped batches after a warm-up that includes compilation,
takes the median of repeated steps, and writes `results/<name>.json` (all
numbers plus the machine) and `results/<name>.md` (the table for the
README). Speed is only ever compared within one run.
"""

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def start_tensorflow():
    """Imports TensorFlow as the `keras-damped` command does: keras_damped
    first, which turns TensorFlow's oneDNN kernels on where they pay
    (keras_damped/_onednn.py; a TF_ENABLE_ONEDNN_OPTS already set is kept)
    and starts TensorFlow without its harmless start-up notices."""
    import os

    os.environ["_KERAS_DAMPED_QUIET"] = "1"
    import keras_damped  # noqa: F401, I001 (first: it sets up TensorFlow)
    import tensorflow as tf

    return tf


def parser(description, name):
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="the smallest models and fewest steps (under 2 minutes)",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--out",
        default=str(RESULTS / name),
        help="results path without extension: writes .json and .md "
        "(default: %(default)s)",
    )
    return p


ROW_MARK = "ROW "


def print_row(row):
    """Prints one measured row for `in_fresh_process` to read back."""
    print(ROW_MARK + json.dumps(row), flush=True)


def in_fresh_process(script, argv):
    """Runs `script argv` in a new Python process; returns the rows it printed.

    Many models trained one after another in one process slow down (plain
    Keras ResNet-110 fell from 91 to 67 images/s after 18 other models
    here), so the benchmarks measure each model or group of models from a
    clean TensorFlow runtime.
    """
    command = [sys.executable, str(script), *argv]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(ROW_MARK)]
    return [json.loads(line[len(ROW_MARK) :]) for line in lines]


# AVX2 on an AVX-512 machine: oneDNN (in TensorFlow and in PyTorch) capped
# to AVX2 code, XLA's CPU code generation too, and PyTorch's own kernels.
# TensorFlow's Eigen kernels in the PyPI wheel are built for one instruction
# set on every CPU, so they need no cap. TensorFlow's default oneDNN state
# on a real AVX2 CPU is off: give TF_ENABLE_ONEDNN_OPTS=0 for that.
AVX2_EMULATION = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
XLA_AVX2 = "--xla_cpu_max_isa=AVX2"


def emulated_avx2_env(env):
    """A copy of `env` that makes this machine compute as an AVX2-only CPU."""
    env = dict(env, **AVX2_EMULATION)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {XLA_AVX2}".strip()
    return env


# A batch of 32 16-channel 32x32 images: PyTorch leaves smaller ones to
# its own kernels.
ONEDNN_ISA_CHECK = {
    "tensorflow": (
        "import keras_damped, tensorflow as tf;"
        "tf.nn.conv2d(tf.ones((32, 32, 32, 16)), tf.ones((3, 3, 16, 16)), 1, 'SAME')"
    ),
    "torch": (
        "import torch;"
        "torch.nn.functional.conv2d("
        "torch.ones(32, 16, 32, 32), torch.ones(16, 16, 3, 3), padding=1)"
    ),
}


def onednn_isa(framework, env):
    """The instruction set oneDNN ran a convolution with in a fresh process
    of `framework` under `env`, and its kernel (from ONEDNN_VERBOSE), or None
    where oneDNN did not run it: the proof that an emulation takes effect."""
    result = subprocess.run(
        [sys.executable, "-c", ONEDNN_ISA_CHECK[framework]],
        capture_output=True,
        text=True,
        env=dict(env, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1"),
    )
    lines = result.stdout.splitlines()
    isa = [ln.split("isa:", 1)[1] for ln in lines if ",info,cpu,isa:" in ln]
    ran = [ln for ln in lines if ",exec,cpu,convolution," in ln]
    if not (isa and ran):
        return None
    return f"{isa[0]} ({ran[0].split(',convolution,')[1].split(',')[0]})"


def positive(name, value):
    if value < 1:
        raise SystemExit(f"{name} must be >= 1. Received: {name}={value}")
    return value


def gpu_names():
    import tensorflow as tf

    return [
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def machine():
    """Date, CPU, cores, GPUs and library versions of this run."""
    from keras_damped._versions import library_versions
    from keras_damped._versions import machine_record

    return {
        "date": datetime.date.today().isoformat(),
        **machine_record(),
        "gpus": gpu_names(),
        "versions": library_versions(),
    }


def machine_line(record):
    gpus = ", ".join(record["gpus"]) or "no GPU"
    v = record["versions"]
    return (
        f"{record['date']}, {record['cpu']} ({record['cores']} cores), {gpus}; "
        f"TensorFlow {v['tensorflow']}, Keras {v['keras']}, Python {v['python']}"
    )


def synthetic_batch(batch_size, shape=(32, 32, 3), classes=10, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch_size, *shape)).astype("float32")
    return x, rng.integers(0, classes, batch_size).astype("int32")


def plain_keras_resnet(depth):
    """The tests' pre-activation ResNet written with Keras layers only."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from plain_resnet import plain_preact_resnet

    return plain_preact_resnet(depth, 10, (32, 32, 3))


def resnet(prefix, depth, **overrides):
    """`<prefix>resnet<depth>` (prefix "", "in_" or "lambda_in_"): the preset,
    or for a depth without one (the quick modes' 14) the ResNet-20 preset
    with that depth."""
    from keras_damped import list_models
    from keras_damped.models.registry import preset_config

    name = f"{prefix}resnet{depth}"
    preset = name if name in list_models() else f"{prefix}resnet20"
    builder, _, kwargs = preset_config(preset)
    return builder(**{**kwargs, "depth": depth, "name": name, **overrides})


def compile_for_training(model, jit_compile):
    """The paper's optimizer and loss, as `keras-damped train` compiles them."""
    import keras

    from keras_damped import ReferenceSGD

    model.compile(
        ReferenceSGD(0.1, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    # Built before the first step, as `train` does: one trace, not two.
    model.optimizer.build(model.trainable_variables)
    return model


def seconds(fn, repeats):
    """Wall-clock seconds of each of `repeats` calls of `fn`."""
    out = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        out.append(time.perf_counter() - begin)
    return out


def interleaved(steps_by_name, rounds, steps):
    """Mean seconds per step of each function in each of `rounds` rounds.

    Each round runs `steps` calls of every function, in an order that
    rotates from round to round, so drifts in the machine's speed hit all
    of them alike; compare them by the median of per-round ratios.
    """
    names = list(steps_by_name)
    times = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            per_step = seconds(steps_by_name[name], steps)
            times[name].append(sum(per_step) / steps)
    return times


def ratio(times, top, bottom):
    """Median and range over rounds of `times[top] / times[bottom]`."""
    ratios = [a / b for a, b in zip(times[top], times[bottom])]
    return round(median(ratios), 3), [round(min(ratios), 3), round(max(ratios), 3)]


def median(values):
    return statistics.median(values)


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save(out, record, table, title):
    """Writes `out`.json and `out`.md and prints the table."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"{title}\n\nMeasured {machine_line(record['machine'])}.\n\n{table}\n"
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    path.with_suffix(".md").write_text(text)
    print(text)
    print(f"Wrote {path.with_suffix('.json')} and {path.with_suffix('.md')}")
