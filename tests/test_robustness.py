"""Attacks, evaluation sanity checks, reports and the `evaluate` command."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_damped import DampedResNet
from keras_damped.cli import main as cli_main
from keras_damped.data import corrupt
from keras_damped.data import load_arrays
from keras_damped.robustness import ATTACKS
from keras_damped.robustness import RobustnessReport
from keras_damped.robustness import attack_fn
from keras_damped.robustness import evaluate
from keras_damped.robustness import logits_fn
from keras_damped.robustness.evaluate import unpack_mask


@keras.saving.register_keras_serializable(package="tests")
class ZeroInputGradient(keras.layers.Layer):
    """Identity forward, zero gradient backward: a gradient-masking defence."""

    def call(self, x):
        return keras.ops.stop_gradient(x)


@pytest.mark.slow
def test_attack_invariants_gradient_masking_and_report_files(
    tmp_path, trained_small_model
):
    model = trained_small_model
    images, labels = load_arrays("fashion_mnist", "test", limit=64)
    x = tf.constant(images / np.float32(255))
    y = tf.constant(labels)
    fn = logits_fn(model)

    # Every attack, through the evaluation: inside its ball (L-inf; C&W is
    # reported at an L2 radius) and [0, 1], eps = 0 gives the clean
    # accuracy, and accuracy does not increase with eps.
    every = evaluate(
        model,
        (images, labels),
        attacks=list(ATTACKS),
        eps=[0, 4 / 255, 16 / 255],
        noises=[],
        limit=8,
        batch_size=8,
        steps=3,
        progress=False,
        apgd_steps=3,
        target_classes=2,
        square_queries=20,
    )
    entry = every.data["models"]["in_resnet14"]
    assert entry["sanity"]["in_ball"] and entry["sanity"]["in_range"]
    assert set(entry["sanity"]["max_linf"]) == set(ATTACKS) - {"cw_l2"}
    for attack in ATTACKS:
        accs = [entry["attacks"][attack][k] for k in ("0", "4", "16")]
        assert accs[0] == entry["clean"], attack
        assert accs[1] <= accs[0] and accs[2] <= accs[1], attack
    adv = attack_fn("cw_l2", fn, 0, steps=3)(x[:4], y[:4]).numpy()
    assert adv.min() >= 0 and adv.max() <= 1

    # Invariants on the evaluated accuracies.
    masked = keras.Sequential(
        [keras.Input((28, 28, 1)), ZeroInputGradient(), model], name="masked"
    )
    report = evaluate(
        {"in_resnet14": model, "masked": masked},
        (images, labels),
        attacks=["fgsm", "ifgsm", "pgd"],
        eps=[0, 2 / 255, 16 / 255],
        noises=["gaussian"],
        severities=[1, 5],
        limit=64,
        batch_size=64,
        steps=10,
        progress=False,
        noise_levels={"gaussian": [0.3]},
    )
    m = report.data["models"]["in_resnet14"]
    # Per-example masks decode to the reported accuracies.
    assert unpack_mask(m["masks"]["clean"], 64).mean() == m["clean"]
    for attack, by_eps in m["masks"]["attacks"].items():
        for k, packed in by_eps.items():
            assert unpack_mask(packed, 64).mean() == m["attacks"][attack][k]
    # An explicit level: seeded draws, the same for every model.
    noisy = corrupt(
        images[..., None] / np.float32(255), "gaussian", level=0.3, seed=(0, 1000)
    )
    predicted = np.argmax(model.predict(noisy, verbose=0), -1)
    assert m["noise_levels"]["gaussian"]["0.3"] == np.mean(predicted == labels)
    assert report.data["settings"]["noise_levels"] == {"gaussian": ["0.3"]}
    assert m["clean"] >= 0.5  # it is trained
    for attack in ("fgsm", "ifgsm", "pgd"):
        accs = [m["attacks"][attack][k] for k in ("0", "2", "16")]
        assert accs[0] == m["clean"]  # eps = 0 is the clean accuracy
        assert all(b <= a + 0.01 for a, b in zip(accs, accs[1:]))  # non-increasing
    for k in ("2", "16"):
        assert m["attacks"]["pgd"][k] <= m["attacks"]["fgsm"][k] + 0.02
    assert m["sanity"]["large_eps_pgd"] <= 0.05
    assert m["sanity"]["in_ball"] and m["sanity"]["in_range"]
    assert m["sanity"]["flags"] == []
    # The masked model: same clean accuracy, attacks see no gradient.
    masked_entry = report.data["models"]["masked"]
    assert masked_entry["clean"] == m["clean"]
    assert masked_entry["sanity"]["gradient_masking_suspected"]
    assert any("gradient masking" in f for f in masked_entry["sanity"]["flags"])

    # The files: JSON round trip with every requested cell, Markdown, PNGs, TB.
    out = report.save(tmp_path / "eval")
    assert sorted(os.listdir(out)) == ["plots", "report.json", "report.md", "tb"]
    again = RobustnessReport.from_json(os.path.join(out, "report.json"))
    assert again.data == json.loads(json.dumps(report.data))
    for name in ("in_resnet14", "masked"):
        cells = again.data["models"][name]
        assert set(cells["attacks"]) == {"fgsm", "ifgsm", "pgd"}
        assert all(set(v) == {"0", "2", "16"} for v in cells["attacks"].values())
        assert set(cells["noises"]["gaussian"]) == {"1", "5", "mean"}
    markdown = open(os.path.join(out, "report.md")).read()
    assert "| in_resnet14 |" in markdown and "gradient masking" in markdown
    for png in (
        "accuracy_vs_eps.png",
        "accuracy_vs_severity.png",
        "adversarial_examples.png",
    ):
        path = os.path.join(out, "plots", png)
        assert os.path.getsize(path) > 1000
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(os.path.join(out, "tb", "in_resnet14"))
    with pytest.raises(FileExistsError, match="already holds results"):
        report.save(out)


def test_softmax_head_is_evaluated_on_its_logits(rng):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    probs = keras.layers.Dense(3, activation="softmax", name="head")(hidden)
    model = keras.Model(inputs, probs)
    x = rng.normal(size=(4, 6)).astype("float32")
    logits = logits_fn(model)(x).numpy()
    np.testing.assert_allclose(
        keras.ops.softmax(logits), model(x), rtol=1e-5, atol=1e-6
    )
    head = model.get_layer("head")
    expected = hidden_out = keras.Model(inputs, hidden)(x)
    expected = hidden_out @ head.kernel + head.bias
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_tfds_cifar10_corrupted_path_in_evaluate(tmp_path):
    import tensorflow_datasets as tfds

    model = DampedResNet(20, input_shape=(32, 32, 3))
    with tfds.testing.mock_data(num_examples=8, data_dir=str(tmp_path)):
        report = evaluate(
            model,
            "cifar10",
            attacks=[],
            eps=[],
            noises=["impulse"],
            severities=[2, 4],
            limit=8,
            noise_source="tfds",
            progress=False,
        )
    settings = report.data["settings"]
    assert settings["noise_source"].startswith("CIFAR-10-C files")
    assert set(report.data["models"]["in_resnet20"]["noises"]["impulse"]) == {
        "2",
        "4",
        "mean",
    }


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    DampedResNet(14, input_shape=(28, 28, 1), normalization="fashion_mnist").save(path)
    return str(path)


@pytest.mark.parametrize(
    "args,match",
    [
        (["--eps", "-1"], "--eps takes radii >= 0"),
        (["--eps", "two"], "comma-separated numbers"),
        (["--attacks", "deepfool"], "attack='deepfool'"),
        (["--noises", "fog"], "noise='fog'"),
        (["--severities", "0-3"], "severit"),
        (["--severities", "6"], "severit"),
        (["--dataset", "cifar10"], r"takes inputs \(None, 28, 28, 1\)"),
    ],
)
def test_bad_evaluate_input_is_refused_before_any_work(
    args, match, saved_model, tmp_path, capsys
):
    out = tmp_path / "eval"
    code = cli_main(
        [
            "evaluate",
            "--model",
            saved_model,
            "--dataset",
            "fashion_mnist",
            "--out",
            str(out),
            "--limit",
            "8",
            *args,
        ]
    )
    assert code == 2
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "eval.partial").exists()


def test_bad_evaluate_messages(saved_model, tmp_path):
    from keras_damped.robustness import parse_eps

    with pytest.raises(ValueError, match="eps=-1"):
        parse_eps([-1])
    with pytest.raises(ValueError, match="eps='1'"):
        parse_eps(["1"])
    with pytest.raises(ValueError, match="attack='deepfool'"):
        evaluate(saved_model, "fashion_mnist", attacks=["deepfool"])
    with pytest.raises(ValueError, match="noise='fog'"):
        evaluate(saved_model, "fashion_mnist", noises=["fog"])
    with pytest.raises(ValueError, match="severity=6"):
        evaluate(saved_model, "fashion_mnist", severities=[6])
    with pytest.raises(ValueError, match=re.escape("No such model file")):
        evaluate(str(tmp_path / "nope.keras"), "fashion_mnist")
    corrupt_file = tmp_path / "corrupt.keras"
    corrupt_file.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="missing or corrupt"):
        evaluate(str(corrupt_file), "fashion_mnist")
    with pytest.raises(ValueError, match=r"takes inputs \(None, 28, 28, 1\)"):
        evaluate(saved_model, "cifar10")


def test_evaluate_command_writes_the_run_folder(saved_model, tmp_path, capsys):
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "--model",
        saved_model,
        "--dataset",
        "fashion_mnist",
        "--attacks",
        "fgsm",
        "--eps",
        "0,2",
        "--noises",
        "shot",
        "--severities",
        "1,5",
        "--limit",
        "16",
        "--out",
        str(out),
    ]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "| FGSM 0 | FGSM 2 |" in printed.replace("clean | shot | ", "")
    assert f"tensorboard --logdir {out}/tb" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["settings"]["eps_255"] == ["0", "2"]
    assert data["settings"]["severities"] == [1, 5]
    before = (out / "report.json").read_bytes()
    assert cli_main(args) == 2  # refuses to replace results without --overwrite
    assert "already holds results" in capsys.readouterr().err
    assert (out / "report.json").read_bytes() == before
