"""GPU check: In-ResNet-110 training throughput with XLA and mixed precision.

Trains `in_resnet110` on synthetic CIFAR-shaped data (random pixels, random
labels: the speed of a training step does not depend on the data) with the
paper's optimizer, batch 128, compiled with XLA, first in mixed_bfloat16 and
then in float32, and prints images/s, the seconds one CIFAR-10 epoch (50,000
images) would take, and the peak GPU memory. Warm-up (compilation) is
excluded; the timed part is the median of repeated fits of `--steps` steps.
Runs on whichever Keras backend is set (KERAS_BACKEND); gpu_check.sh picks
JAX where TensorFlow is not installed.
"""

import argparse
import json
import platform
import statistics
import time

import keras
import numpy as np


def peak_memory_gib():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 2**30
    if backend == "tensorflow":
        import tensorflow as tf

        info = tf.config.experimental.get_memory_info("GPU:0")
        return info["peak"] / 2**30
    return float("nan")


def device_name():
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")


def measure(precision, steps, repeats, batch_size):
    from keras_damped import ReferenceSGD
    from keras_damped import create_model

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    model = create_model("in_resnet110")
    model.compile(
        ReferenceSGD(0.1, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(steps * batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, steps * batch_size)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    warmup = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    images_per_s = steps * batch_size / seconds
    keras.config.set_dtype_policy("float32")
    return {
        "precision": precision,
        "images_per_s": round(images_per_s, 1),
        "epoch_50k_s": round(50_000 / images_per_s, 2),
        "warmup_s": round(warmup, 1),
        "peak_memory_gib": round(peak_memory_gib(), 2),
    }


def table(results):
    """The record as the Markdown table the script prints (and writes next
    to --json)."""
    lines = [
        f"{results['device']}, Keras {results['keras']} on {results['backend']}, "
        f"{results['model']}, batch {results['batch_size']}, XLA",
        "",
        "| precision | train images/s | 50k-image epoch (s) | peak memory (GiB) |",
        "|---|---|---|---|",
    ]
    for run in results["runs"]:
        lines.append(
            f"| {run['precision']} | {run['images_per_s']} | {run['epoch_50k_s']} | "
            f"{run['peak_memory_gib']} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precisions", default="mixed_bfloat16,float32")
    parser.add_argument(
        "--json",
        default=None,
        help="also write the results here (and the table next to it, .md)",
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: write the table of a recorded JSON next to it",
    )
    args = parser.parse_args()
    if args.render:
        with open(args.render) as f:
            results = json.load(f)
        with open(args.render.removesuffix(".json") + ".md", "w") as f:
            f.write(table(results))
        return
    results = {
        "device": device_name(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "model": "in_resnet110",
        "batch_size": args.batch_size,
        "runs": [
            measure(p, args.steps, args.repeats, args.batch_size)
            for p in args.precisions.split(",")
        ],
    }
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        with open(args.json.removesuffix(".json") + ".md", "w") as f:
            f.write(table(results))


if __name__ == "__main__":
    main()
