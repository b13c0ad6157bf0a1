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


def _two_workers(run_dir, scratch, *extra, epochs=1):
    """`keras-damped train` as two workers on localhost: (exit code, stdout,
    stderr) of each. Their temporary folders go to `scratch`."""
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
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
        str(epochs),
        "--train-limit",
        "128",
        "--test-limit",
        "64",
        "--batch-size",
        "32",
        # A rate that does not depend on the number of epochs, so that one
        # epoch resumed to two is the same run as two straight through.
        "--schedule",
        "constant",
        "--distribute",
        "multi_worker",
        "--out",
        str(run_dir),
        "--verbose",
        "2",
        *extra,
    ]
    workers = []
    for index in range(2):
        env = dict(
            os.environ,
            TMPDIR=str(scratch),
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
    return [(w.returncode, *out) for w, out in zip(workers, outputs)]


def _epoch_lines(out):
    return [line for line in out.splitlines() if line.startswith(("Epoch", "4/4"))]


@pytest.mark.slow
def test_two_workers_on_localhost_train_and_resume(tmp_path):
    import keras
    import numpy as np

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run_dir = tmp_path / "multi"
    results = _two_workers(run_dir, scratch)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    # Both workers took the same synchronous steps and saw the same metrics.
    lines = [_epoch_lines(out) for _, out, _ in results]
    assert len(lines[0]) == 1 and lines[0][0].startswith("4/4")
    assert lines[0][0].split("step")[-1] == lines[1][0].split("step")[-1]
    record = json.loads((run_dir / "config.json").read_text())
    assert record["resolved"]["replicas"] == 2
    assert (run_dir / "model.keras").exists()
    # The same command again: worker 0 refuses the finished run, and the
    # other worker learns it and stops too (before, it waited for worker 0).
    results = _two_workers(run_dir, scratch)
    assert [code for code, _, _ in results] == [2, 2]
    assert "already holds a finished run" in results[0][2]
    assert "Worker 0 refused the run folder" in results[1][2]
    # Resumed for a second epoch: both workers restore worker 0's checkpoint
    # and take the same steps, and the weights are those of a run of two
    # epochs straight through (before, worker 1 started over at epoch 1 and
    # the collectives failed).
    results = _two_workers(run_dir, scratch, "--resume", epochs=2)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    lines = [_epoch_lines(out) for _, out, _ in results]
    assert lines[0][0] == lines[1][0] == "Epoch 2/2" and len(lines[0]) == 2
    assert lines[0][1].split("step")[-1] == lines[1][1].split("step")[-1]
    record = json.loads((run_dir / "config.json").read_text())
    assert record["resumed_at_epoch"] == 1
    straight = tmp_path / "straight"
    for code, _, err in _two_workers(straight, scratch, epochs=2):
        assert code == 0, err[-3000:]
    a = keras.saving.load_model(run_dir / "model.keras")
    b = keras.saving.load_model(straight / "model.keras")
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb), err_msg=wa.path)
    # Worker 1's scratch checkpoints went with it.
    assert not [p.name for p in scratch.iterdir() if "keras_damped" in p.name]
