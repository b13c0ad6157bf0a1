"""tf.distribute: MirroredStrategy over two logical CPUs, two workers on localhost."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

MIRRORED_SCRIPT = textwrap.dedent("""
    import json
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from keras_damped import create_model
    from keras_damped.training import add_weight_decay

    def build():
        keras.utils.set_random_seed(0)
        model = create_model("in_resnet20", input_shape=(8, 8, 3))
        add_weight_decay(model, 1e-4)
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.optimizer.build(model.trainable_variables)  # as `train` does
        return model

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, 16)

    # One device, the same global batch: each replica normalises its half of
    # the batch with its own BN statistics, so the single-device reference
    # averages the losses and gradients of the two halves.
    reference = build()
    losses, grads = [], []
    for half in (slice(0, 8), slice(8, 16)):
        with tf.GradientTape() as tape:
            ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y[half], reference(x[half], training=True), from_logits=True))
            loss = ce + tf.add_n(reference.losses)
        losses.append(float(loss))
        grads.append(tape.gradient(loss, reference.trainable_variables))
    mean_grads = [(a + b) / 2 for a, b in zip(*grads)]
    reference.optimizer.apply(mean_grads, reference.trainable_variables)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build()
    # fit() on a dataset, as keras-damped train does: the global batch of 16
    # is split into two replica batches of 8.
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    loss = mirrored.fit(data, epochs=1, verbose=0).history["loss"][0]
    # One device on the whole batch: the loss fit() reports for its first
    # (and only) step, that of the weights before the update.
    whole = build()
    full_batch = float(tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
        y, whole(x, training=True), from_logits=True)) + tf.add_n(whole.losses))
    weight_diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(reference.trainable_variables, mirrored.trainable_variables))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "loss": float(loss), "reference": float(np.mean(losses)),
                      "full_batch": float(full_batch), "weight_diff": weight_diff}))
""")


def test_mirrored_strategy_step_matches_one_device():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    # Tolerance 1e-5: float32 summation order differs between the paths.
    assert abs(out["loss"] - out["reference"]) <= 1e-5 * max(1.0, abs(out["reference"]))
    assert out["weight_diff"] <= 1e-5
    # Against one device on the whole batch the only difference is BN's
    # per-replica statistics: close, not equal.
    assert abs(out["loss"] - out["full_batch"]) <= 0.1 * out["full_batch"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_localhost_train_one_epoch(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir = tmp_path / "multi"
    args = [
        sys.executable,
        "-m",
        "keras_damped.cli",
        "train",
        "--model",
        "in_resnet20",
        "--dataset",
        "fashion_mnist",
        "--epochs",
        "1",
        "--train-limit",
        "128",
        "--test-limit",
        "64",
        "--batch-size",
        "32",
        "--distribute",
        "multi_worker",
        "--out",
        str(run_dir),
        "--verbose",
        "2",
    ]
    workers = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        )
        workers.append(
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    # Both workers took the same synchronous steps and saw the same metrics.
    lines = [
        [line for line in out.splitlines() if line.startswith("4/4")]
        for out, _ in outputs
    ]
    assert (
        len(lines[0]) == 1
        and lines[0][0].split("step")[-1] == lines[1][0].split("step")[-1]
    )
    record = json.loads((run_dir / "config.json").read_text())
    assert record["resolved"]["replicas"] == 2
    assert (run_dir / "model.keras").exists()
