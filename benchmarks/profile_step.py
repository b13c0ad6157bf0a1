"""Where a step's time goes: TensorFlow profiler, summed by op type.

Traces `--steps` training steps of a model, or one PGD attack call of
`--steps` iterations (`--what pgd` / `pgd_eager`), after two warm-up calls,
with `tf.profiler`, reads the trace back (the XPlane protobuf TensorFlow ships)
and sums the time of the kernels by op type: TensorFlow ops in graph mode
(`_MklNativeConv2DBackpropFilter`, `Mul`, ...) or XLA thunks with XLA
(`convolution`, `transpose_copy_fusion`, ...). Kernels of the two inter-op
threads may overlap, so the percentages are of summed kernel time. The
trace stays in `--logdir` for `tensorboard --logdir` (profile plugin).

`--what torch_train` profiles the PyTorch twin's training step of
`benchmarks/frameworks.py` (`--model` in_resnet20 or in_resnet110) with
`torch.profiler`, summed by ATen op (self CPU time), for the same
comparison op by op. `--emulate-avx2` runs either as on an AVX2-only CPU
(oneDNN and PyTorch capped to AVX2; see benchmarks/_common.py).

    python benchmarks/profile_step.py --model in_resnet110 --precision mixed_bfloat16
    python benchmarks/profile_step.py --model in_resnet110 --jit-compile on
    python benchmarks/profile_step.py --what pgd --model in_resnet20 --steps 20
    python benchmarks/profile_step.py --what torch_train --model in_resnet110
"""

import collections
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import _common

_OP = re.compile(r"^(?P<name>.*):(?P<type>[A-Za-z0-9_]+)$")


def kernel_times(logdir, steps):
    """{op type: (milliseconds per step, calls per step)} from a trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = next(Path(logdir).rglob("*.xplane.pb"))
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    totals, calls = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            graph_ops = line.name.startswith("tf_Compute")
            xla_thunks = "Eigen" in line.name
            if not (graph_ops or xla_thunks):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if "::" in name:
                    continue
                if graph_ops:
                    match = _OP.match(name)
                    if not match:
                        continue
                    kind = match["type"]
                else:
                    kind = re.sub(r"\.\d+$", "", name)
                totals[kind] += event.duration_ps / 1e9
                calls[kind] += 1
    return {k: (v / steps, calls[k] / steps) for k, v in totals.most_common()}


def profile(what, model_name, precision, jit, batch_size, steps, logdir):
    """Seconds per step and kernel times per step of a training step or of
    one PGD iteration (`what="pgd"`: our attack path, `"pgd_eager"`:
    CleverHans called eagerly; one attack call of `steps` iterations)."""
    import keras
    import tensorflow as tf

    from keras_damped import create_model

    keras.config.set_dtype_policy(precision)
    try:
        model = _common.compile_for_training(create_model(model_name), jit)
    finally:
        keras.config.set_dtype_policy("float32")
    x, y = _common.synthetic_batch(batch_size)
    if what == "train":
        calls, per_call = steps, 1

        def step():
            model.train_on_batch(x, y)
    else:
        from attack_speed import eager_attack
        from attack_speed import our_attack

        attack = (
            eager_attack("pgd", model, steps)
            if what == "pgd_eager"
            else our_attack("pgd", model, steps, jit)
        )
        x, y = tf.constant(x), tf.constant(y)
        calls, per_call = 1, steps

        def step():
            attack(x, y).numpy()

    for _ in range(2):
        step()
    step_s = _common.median(_common.seconds(step, 3)) / per_call
    tf.profiler.experimental.start(logdir)
    for _ in range(calls):
        step()
    tf.profiler.experimental.stop()
    return step_s, kernel_times(logdir, calls * per_call)


def torch_profile(model_name, batch_size, steps):
    """Seconds per step and {ATen op: (self CPU ms per step, calls per step)}
    of the PyTorch twin's training step."""
    import torch
    from frameworks import DEPTHS
    from frameworks import torch_step

    step = torch_step(DEPTHS[model_name], batch_size, os.cpu_count())
    for _ in range(2):
        step()
    step_s = _common.median(_common.seconds(step, 3))
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as trace:
        for _ in range(steps):
            step()
    events = sorted(trace.key_averages(), key=lambda e: -e.self_cpu_time_total)
    return step_s, {
        e.key: (e.self_cpu_time_total / 1000 / steps, e.count / steps)
        for e in events
        if e.self_cpu_time_total > 0
    }


def main():
    p = _common.parser(__doc__.splitlines()[0], "profile")
    p.add_argument(
        "--what",
        default="train",
        choices=("train", "pgd", "pgd_eager", "torch_train"),
        help="a training step, one iteration of PGD (ours or eager "
        "CleverHans), or the PyTorch twin's training step",
    )
    p.add_argument("--emulate-avx2", action="store_true", help="as on an AVX2-only CPU")
    p.add_argument("--model", default="in_resnet110")
    p.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
    )
    p.add_argument("--jit-compile", default="off", choices=("on", "off"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--logdir", default=None, help="keep the trace here")
    args = p.parse_args()
    if args.quick:
        args.model, args.steps = "in_resnet20", 1
    _common.positive("steps", args.steps)
    if args.emulate_avx2 and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        env = _common.emulated_avx2_env(os.environ)
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)
    _common.start_tensorflow()
    from keras_damped import list_models

    if args.model not in list_models():
        raise SystemExit(
            f"Unknown model. Expected one of {list_models()}. "
            f"Received: --model {args.model}"
        )
    jit = args.jit_compile == "on"
    if args.what == "torch_train":
        step_s, times = torch_profile(args.model, args.batch_size, args.steps)
    else:
        logdir = args.logdir or tempfile.mkdtemp(prefix="keras_damped_profile_")
        step_s, times = profile(
            args.what,
            args.model,
            args.precision,
            jit,
            args.batch_size,
            args.steps,
            logdir,
        )
        if not args.logdir:
            shutil.rmtree(logdir)
    total = sum(ms for ms, _ in times.values())
    rows = [
        [kind, f"{ms:.1f}", f"{100 * ms / total:.1f}%", f"{n:g}"]
        for kind, (ms, n) in list(times.items())[: args.top]
    ]
    record = {
        "machine": _common.machine(),
        "settings": {
            "what": args.what,
            "model": args.model,
            "precision": args.precision,
            "jit_compile": jit,
            "batch_size": args.batch_size,
            "emulated_avx2": args.emulate_avx2,
        },
        "step_ms": round(1000 * step_s, 1),
        "kernel_ms_per_step": {k: round(ms, 2) for k, (ms, _) in times.items()},
    }
    step_name = {
        "train": "training step",
        "pgd": "PGD iteration (ours)",
        "pgd_eager": "PGD iteration (eager CleverHans)",
        "torch_train": "training step of the PyTorch twin",
    }[args.what]
    mode = (
        "eager"
        if args.what in ("pgd_eager", "torch_train")
        else ("XLA" if jit else "graph mode")
    )
    if args.emulate_avx2:
        mode += ", emulated AVX2-only CPU"
    title = (
        f"Profile: {args.model} {step_name}, batch {args.batch_size}, "
        f"{args.precision}, {mode}: "
        f"{1000 * step_s:.0f} ms/step, {total:.0f} ms of kernel time per step"
    )
    table = _common.markdown_table(["kernel", "ms/step", "share", "calls/step"], rows)
    _common.save(args.out, record, table, title)


if __name__ == "__main__":
    main()
