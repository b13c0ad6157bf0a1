import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import SMALL_RUN
from conftest import tensor_events
from tensorboard.util import tensor_util

from keras_damped import damped_adds
from keras_damped import damping_values
from keras_damped.cli import main as cli_main
from keras_damped.data import DatasetUnavailableError
from keras_damped.data import load_arrays
from keras_damped.training import RunDirExistsError
from keras_damped.training import TrainConfig
from keras_damped.training import TrainingDivergedError
from keras_damped.training import add_weight_decay
from keras_damped.training import learning_rate_schedule
from keras_damped.training import resolve_jit_compile
from keras_damped.training import resolve_precision
from keras_damped.training import train
from keras_damped.training.schedules import paper_switch_steps


def tree_digest(folder):
    """Hash of every file's path and bytes, to prove a folder was not touched."""
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(path.encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


# Tests of training behaviour train in graph mode: on AVX2-only CPUs
# `jit_compile="auto"` picks XLA, whose compile of a ResNet-20 step takes
# about a minute there and is most of such a short run. XLA itself is
# tested by test_registered_models.py (every block kind and damping) and
# the benchmarks' smoke runs; the rule `auto` follows, below.
NO_XLA = "off"


def small_config(run_dir, **overrides):
    settings = dict(
        model="in_resnet20",
        dataset="fashion_mnist",
        run_dir=str(run_dir),
        epochs=1,
        batch_size=64,
        train_limit=256,
        test_limit=128,
        verbose=0,
        jit_compile=NO_XLA,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.mark.slow
def test_real_fashion_mnist_run(trained_small_run, capsys):
    """The shared run (conftest.SMALL_RUN: an In-ResNet-14 trained by `train`
    on 3,000 real Fashion-MNIST images for 2 epochs): it learns, writes the
    run folder and TensorBoard events, and refuses to be replaced."""
    run_dir = trained_small_run
    record = json.loads((run_dir / "config.json").read_text())
    config = TrainConfig(
        model=record["config"]["model"], run_dir=str(run_dir), **SMALL_RUN
    )
    assert record["config"] == dataclasses.asdict(config)

    # It genuinely learns: chance is 10%. The validation accuracy TensorBoard
    # logged is the saved model's on the first 1,000 test images.
    validation = tensor_events(run_dir / "tb" / "validation")
    val_accuracy = [
        float(tensor_util.make_ndarray(e.tensor_proto))
        for e in validation.Tensors("epoch_accuracy")
    ]
    assert len(val_accuracy) == 2 and val_accuracy[-1] >= 0.60
    loaded = keras.saving.load_model(run_dir / "model.keras")
    images, labels = load_arrays("fashion_mnist", "test", limit=1000)
    logits = loaded.predict(images / np.float32(255), verbose=0)
    accuracy = float(np.mean(np.argmax(logits, -1) == labels))
    assert accuracy == pytest.approx(val_accuracy[-1], abs=1e-3)

    # The run folder of DESIGN.md.
    assert sorted(os.listdir(run_dir)) == [
        "checkpoints",
        "config.json",
        "model.keras",
        "tb",
    ]
    assert record["resolved"]["steps_per_epoch"] == 47  # ceil(3000 / 64)
    # The thread count TensorFlow ran with: TF_NUM_INTRAOP_THREADS, which
    # conftest.py sets (1 unless given; no tf.config call involved).
    threads = int(os.environ["TF_NUM_INTRAOP_THREADS"])
    assert record["resolved"]["intra_op_threads"] == threads
    # 2 x 47 = 94 steps: the rate drops at steps 47 and 70 (50%, 75% = 70.5).
    assert record["resolved"]["lr_switch"]["step"] == [47, 70]
    assert record["resolved"]["lr_switch"]["epoch"] == [1.0, round(70 / 47, 4)]
    assert record["versions"]["keras"] == keras.__version__
    assert record["machine"]["cpu"] and record["machine"]["cores"] >= 1

    # TensorBoard: a scalar per damped block, the histogram, the config text.
    lambdas = damping_values(loaded)
    damping = tensor_events(run_dir / "tb" / "damping")
    tags = set(damping.Tags()["tensors"])
    assert {f"damping/{block}" for block in lambdas} <= tags
    assert {"damping/all", "config"} <= tags
    # Each stage's first block stays plain (docs/paper.md): 1 of its 2 is damped.
    assert len(lambdas) == 3
    for block, lam in lambdas.items():
        events = damping.Tensors(f"damping/{block}")
        assert [e.step for e in events] == [0, 1]
        logged = float(tensor_util.make_ndarray(events[-1].tensor_proto))
        assert logged == pytest.approx(float(lam), abs=1e-6)
    histogram = tensor_util.make_ndarray(
        damping.Tensors("damping/all")[-1].tensor_proto
    )
    assert histogram[:, 2].sum() == 3  # three lambdas counted in the buckets
    train_events = tensor_events(run_dir / "tb" / "train")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(
        train_events.Tags()["tensors"]
    )

    # A finished run is refused, through the API and the command, untouched.
    before = tree_digest(run_dir)
    with pytest.raises(RunDirExistsError, match="--resume.*--overwrite"):
        train(config)
    code = cli_main(
        [
            "train",
            "--model",
            "in_resnet20",
            "--out",
            str(run_dir),
            "--epochs",
            "1",
            "--train-limit",
            "64",
        ]
    )
    assert code == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert tree_digest(run_dir) == before


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "nan"
    train(small_config(run_dir))
    checkpoint = run_dir / "checkpoints" / "latest.weights.h5"
    good = checkpoint.read_bytes()
    model_bytes = (run_dir / "model.keras").read_bytes()
    # Resuming a finished run trains nothing, keeps model.keras and returns
    # the trained weights (not a freshly initialised model).
    again = train(small_config(run_dir), resume=True)
    assert again.history == {} and again.initial_epoch == 1
    assert (run_dir / "model.keras").read_bytes() == model_bytes
    saved = keras.saving.load_model(run_dir / "model.keras")
    for a, b in zip(saved.weights, again.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2.*kept in .*checkpoints"):
        train(small_config(run_dir, epochs=2, lr=1e30), resume=True)
    assert checkpoint.read_bytes() == good
    meta = json.loads((run_dir / "checkpoints" / "training_metadata.json").read_text())
    assert meta["epoch"] == 1
    assert (run_dir / "model.keras").read_bytes() == model_bytes
    record = json.loads((run_dir / "config.json").read_text())
    assert record["config"]["lr"] == 1e30 and record["previous"]["config"]["lr"] == 0.1


def _cli(*args):
    return [sys.executable, "-m", "keras_damped.cli", "train", *args]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, caplog):
    args = [
        "--model",
        "in_resnet20",
        "--dataset",
        "fashion_mnist",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--train-limit",
        "256",
        "--test-limit",
        "64",
        "--seed",
        "5",
        "--verbose",
        "0",
        "--jit-compile",
        NO_XLA,
    ]
    # Straight through in this process; killed in another, resumed here.
    straight = tmp_path / "straight"
    assert cli_main(["train", *args, "--out", str(straight)]) == 0

    killed = tmp_path / "killed"
    meta = killed / "checkpoints" / "training_metadata.json"
    process = subprocess.Popen(_cli(*args, "--out", str(killed)))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if meta.exists() and json.loads(meta.read_text() or "{}").get("epoch", 0) >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epochs_done = json.loads(meta.read_text())["epoch"]
    assert 1 <= epochs_done < 4 and not (killed / "model.keras").exists()

    with caplog.at_level("INFO", logger="keras_damped"):
        assert cli_main(["train", *args, "--out", str(killed)]) == 0
    assert f"Resuming {killed} after epoch {epochs_done}" in caplog.text
    a = keras.saving.load_model(straight / "model.keras")
    b = keras.saving.load_model(killed / "model.keras")
    # Bit-exact on CPU: same seed, the data keyed on the epoch, optimizer state
    # and BN statistics restored by BackupAndRestore.
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb), err_msg=wa.path)


def test_paper_schedule_scales_to_any_epoch_count():
    schedule = learning_rate_schedule("paper", 0.1, epochs=160, steps_per_epoch=391)
    lr = lambda step: round(float(schedule(step)), 6)  # noqa: E731
    # 160 epochs: the rate drops at the first step of epochs 80 and 120 exactly.
    assert paper_switch_steps(160, 391) == [80 * 391, 120 * 391]
    assert [lr(80 * 391 - 1), lr(80 * 391)] == [0.1, 0.01]
    assert [lr(120 * 391 - 1), lr(120 * 391)] == [0.01, 0.001]
    assert lr(160 * 391 - 1) == 0.001
    # 3 epochs of 10 steps: 30 steps, the switches at 50% and 75% of them
    # (steps 15 and 22), so all three phases occur, in the paper's proportions
    # (rounded epochs would give 0.1, 0.1, 0.001 and never 0.01).
    short = learning_rate_schedule("paper", 0.1, epochs=3, steps_per_epoch=10)
    rates = [round(float(short(step)), 6) for step in range(30)]
    assert rates == [0.1] * 15 + [0.01] * 7 + [0.001] * 8
    cosine = learning_rate_schedule("cosine", 0.1, epochs=4, steps_per_epoch=10)
    assert float(cosine(20)) == pytest.approx(0.05) and float(
        cosine(40)
    ) == pytest.approx(0)
    with pytest.raises(ValueError, match="schedule='step'"):
        learning_rate_schedule("step", 0.1, 4, 10)


@pytest.mark.parametrize("decay_damping", [True, False])
def test_weight_decay_is_coupled_l2(decay_damping, rng):
    """The gradient gains exactly weight_decay * w, as PyTorch SGD adds it."""
    import tensorflow as tf

    from keras_damped import create_model

    model = create_model("in_resnet20", input_shape=(8, 8, 3))
    x = rng.uniform(size=(4, 8, 8, 3)).astype("float32")
    y = np.array([1, 2, 3, 4])

    def grads():
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                y, model(x, training=True), from_logits=True
            )
            loss = tf.reduce_mean(loss) + tf.add_n([0.0, *model.losses])
        return tape.gradient(loss, model.trainable_variables)

    plain = grads()
    count = add_weight_decay(model, 1e-2, decay_damping=decay_damping)
    decayed = grads()
    assert count == len(model.trainable_variables) - (0 if decay_damping else 6)
    for var, g0, g1 in zip(model.trainable_variables, plain, decayed):
        is_k = var.path.endswith("add/k")
        expected = 0.0 if (is_k and not decay_damping) else 1e-2 * np.asarray(var)
        np.testing.assert_allclose(g1 - g0, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("onednn,expected", [(True, False), (False, True)])
def test_jit_auto_follows_the_measured_cpu_rule(onednn, expected, monkeypatch):
    """Graph mode where oneDNN is on, XLA where it is off (README,
    Performance)."""
    from keras_damped import _onednn

    monkeypatch.setattr(_onednn, "_enabled_now", lambda: onednn)
    assert resolve_jit_compile("auto") is expected
    assert resolve_jit_compile("on") is True
    assert resolve_jit_compile("off") is False
    # Two CPU replicas (multi_worker, mirrored over CPU devices): XLA has no
    # CPU collectives, so auto trains them in graph mode and `on` is refused.
    assert resolve_jit_compile("auto", replicas=2) is False
    assert resolve_jit_compile("off", replicas=2) is False
    with pytest.raises(ValueError, match="jit_compile='on' cannot train 2 CPU"):
        resolve_jit_compile("on", replicas=2)


def test_jit_auto_is_graph_mode_in_this_process():
    """This machine's oneDNN state (TensorFlow's answer) decides it."""
    from tensorflow.python.util import _pywrap_util_port

    assert resolve_jit_compile("auto") is not _pywrap_util_port.IsMklEnabled()


def test_precision_auto_is_float32_on_this_cpu():
    # benchmarks/precision_check.py: on this AVX512_BF16 CPU mixed_bfloat16 is
    # neither faster end to end nor within a point of float32.
    assert resolve_precision("auto") == "float32"
    for setting in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(setting) == setting


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        ({"dataset": "imagenet"}, ValueError, "name='imagenet'"),
        ({"model": "resnet21"}, ValueError, "model='resnet21'"),
        ({"epochs": 0}, ValueError, "epochs=0"),
        ({"batch_size": -8}, ValueError, "batch_size=-8"),
        ({"precision": "float16"}, ValueError, "precision='float16'"),
        ({"lr": float("nan")}, ValueError, "lr=nan"),
        ({"validation_split": 1.0}, ValueError, "validation_split=1.0"),
        ({"model": "missing.keras"}, ValueError, "missing.keras"),
        ({"dataset": "cifar10"}, DatasetUnavailableError, "not available"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    overrides, error, match, tmp_path, monkeypatch
):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    run_dir = tmp_path / "run"
    with pytest.raises(error, match=match):
        train(small_config(run_dir, **overrides))
    assert not run_dir.exists()


def test_model_that_does_not_fit_the_dataset(tmp_path):
    from keras_damped import create_model

    path = tmp_path / "cifar_shaped.keras"
    create_model("resnet20").save(path)
    with pytest.raises(
        ValueError, match=r"takes \(None, 32, 32, 3\).*\(None, 28, 28, 1\)"
    ):
        train(small_config(tmp_path / "run", model=str(path)))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "auto"])
def test_mixed_precision_run(tmp_path, precision):
    result = train(
        small_config(
            tmp_path / "run", precision=precision, train_limit=128, test_limit=64
        )
    )
    # The documented rule, not the function under test: `auto` is float32 on
    # a CPU (this suite's machines have no GPU or TPU).
    policy = {"mixed_bfloat16": "mixed_bfloat16", "auto": "float32"}[precision]
    compute = "float32" if policy == "float32" else policy.split("_")[1]
    assert result.model.get_layer("stage2_block2").compute_dtype == compute
    assert all(np.isfinite(v) for v in result.history["loss"])
    adds = damped_adds(result.model, trainable_only=True).values()
    assert adds and all(add.k.dtype == "float32" for add in adds)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["precision"] == precision
    assert record["resolved"]["precision"] == policy


def test_a_run_folder_written_with_limit_reads_as_train_limit(tmp_path):
    """Run folders written before `limit` was renamed `train_limit` (the
    converged study's committed runs among them) read and resume as today's."""
    from keras_damped.training.loop import _run_state

    record = {"config": small_config(tmp_path).to_dict()}
    record["config"]["limit"] = record["config"].pop("train_limit")
    (tmp_path / "config.json").write_text(json.dumps(record))
    assert TrainConfig.from_json(str(tmp_path / "config.json")).train_limit == 256
    stored, finished, epochs = _run_state(str(tmp_path))
    assert stored == small_config(tmp_path).to_dict()
    assert not finished and epochs == 0
