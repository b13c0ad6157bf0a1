"""Smoke tests: every benchmark script runs end to end in its quickest mode.

They check that the scripts work and write complete results, never how
fast anything is (speed is only compared within one benchmark run).
"""

import json
import math
import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(script, *argv):
    """Runs benchmarks/`script`.py as `python benchmarks/script.py *argv`
    would, but in this process: the processes a script starts itself (the
    fresh process per model that every timing comes from) are real, while
    the script's own start would only repeat this worker's import of
    TensorFlow (4-6 s)."""
    path = BENCHMARKS / f"{script}.py"
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(BENCHMARKS))
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def run_benchmark(script, tmp_path, *extra):
    out = tmp_path / script
    run_script(script, "--quick", "--out", str(out), *extra)
    record = json.loads(out.with_suffix(".json").read_text())
    table = out.with_suffix(".md").read_text()
    machine = record["machine"]
    assert machine["cores"] >= 1 and machine["cpu"]
    assert machine["versions"]["tensorflow"] and machine["versions"]["keras"]
    assert machine["date"] in table and "|---|" in table
    return record, table


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_throughput_quick(tmp_path):
    record, table = run_benchmark("throughput", tmp_path, "--batch-size", "8")
    rows = record["rows"]
    assert {(r["model"], r["precision"], r["jit_compile"]) for r in rows} == {
        ("resnet20", "float32", False),
        ("in_resnet20", "float32", False),
        ("in_resnet20", "mixed_bfloat16", False),
        ("in_resnet20", "float32", True),
    }
    for row in rows:
        assert row["batch_size"] == 8 and row["train_steps_timed"] >= 2
        assert positive(row["train_images_per_s"])
        assert positive(row["inference_images_per_s"])
        assert f"| {row['model']} | {row['precision']} |" in table
    # resnet20 for CIFAR-shaped input: 272,378 trainable + 1,472 BN statistics.
    assert rows[0]["parameters"] == 273_850


def test_throughput_rejects_unknown_models_before_any_work(tmp_path):
    with pytest.raises(SystemExit) as refused:
        run_script("throughput", "--models", "resnet21", "--out", str(tmp_path / "t"))
    message = str(refused.value)
    assert "['resnet21']" in message and "in_resnet20" in message
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


@pytest.mark.slow
def test_damping_overhead_quick(tmp_path):
    record, _ = run_benchmark(
        "damping_overhead", tmp_path, "--batch-size", "8", "--size", "8"
    )
    (row,) = record["rows"]
    assert row["depth"] == 14
    assert set(row["step_ms"]) == {"resnet14", "in_resnet14", "lambda_in_resnet14"}
    assert all(positive(v) for v in row["step_ms"].values())
    for prefix in ("in_", "lambda_in_"):
        low, high = row[f"{prefix}ratio_range"]
        assert positive(low) and low <= row[f"{prefix}ratio"] <= high


@pytest.mark.slow
def test_attack_speed_quick(tmp_path):
    record, _ = run_benchmark(
        "attack_speed",
        tmp_path,
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--apgd-steps",
        "3",
    )
    assert [r["attack"] for r in record["rows"]] == ["PGD-2", "FGSM"]
    (apgd,) = record["apgd_rows"]
    assert apgd["attack"] == "APGD-CE-3 vs PGD-3" and 0 <= apgd["fooled"] <= 1
    assert positive(apgd["pgd_graph_it_per_s"]) and positive(apgd["apgd_ce_it_per_s"])
    low, high = apgd["apgd_vs_pgd_range"]
    assert positive(low) and low <= apgd["apgd_vs_pgd"] <= high
    for row in record["rows"]:
        for key in ("eager_cleverhans", "ours_graph", "ours_xla"):
            assert positive(row[key])
        for key in ("ours_graph", "ours_xla"):
            low, high = row[f"{key}_speedup_range"]
            assert positive(low) and low <= row[f"{key}_speedup"] <= high


@pytest.mark.slow
def test_attack_speed_onednn_before_and_after_on_an_emulated_avx2_cpu(tmp_path):
    flags = ["--batch-size", "8", "--steps", "2", "--onednn", "both"]
    record, table = run_benchmark("attack_speed", tmp_path, *flags, "--emulate-avx2")
    assert [r["attack"] for r in record["rows"]] == ["PGD-2", "FGSM"]
    states = record["onednn_states"]
    assert states["off"]["enabled"] is False and states["on"]["enabled"] is True
    assert record["emulated_avx2"] and record["onednn_isa"].startswith("Intel AVX2")
    for row in record["rows"]:
        for key in ("ours_graph", "ours_xla", "eager_cleverhans"):
            cell = row[key]
            assert positive(cell["off"]) and positive(cell["on"])
            low, high = cell["range"]
            assert low <= cell["on_vs_off"] <= high
            assert cell["on_vs_off"] == pytest.approx(cell["on"] / cell["off"], 1e-2)
    assert "| PGD-2 | ours (graph) |" in table


@pytest.mark.slow
def test_precision_check_quick(tmp_path):
    record, _ = run_benchmark("precision_check", tmp_path)
    reference, bf16 = record["rows"]
    assert reference["precision"] == "float32"
    assert reference["accuracy_minus_float32"] == 0
    assert bf16["precision"] == "mixed_bfloat16"
    for row in record["rows"]:
        assert 0 <= row["test_accuracy"] <= 100 and positive(row["seconds"])


@pytest.mark.slow
def test_profile_step_quick(tmp_path):
    record, table = run_benchmark("profile_step", tmp_path, "--batch-size", "8")
    kernels = record["kernel_ms_per_step"]
    # A training step of a CNN runs convolutions forward and backward.
    assert any("Conv2D" in k for k in kernels)
    assert any("Conv2DBackprop" in k for k in kernels)
    assert all(v >= 0 for v in kernels.values()) and positive(record["step_ms"])


@pytest.mark.slow
def test_speedups_quick(tmp_path):
    record, _ = run_benchmark("speedups", tmp_path, "--batch-size", "8")
    pairs = {r["pair"]: r for r in record["rows"]}
    assert len(pairs) == 5
    padding = pairs["symmetric vs same padding, float32"]
    assert (padding["first"], padding["second"]) == (
        "in_resnet14 float32",
        "in_resnet14 same-padding float32",
    )
    library = pairs["library vs plain Keras, float32"]
    assert (library["first"], library["second"]) == (
        "in_resnet14 float32",
        "keras_resnet14 float32",
    )
    undamped = pairs["undamped library vs plain Keras, float32"]
    assert (undamped["first"], undamped["second"]) == (
        "resnet14 float32",
        "keras_resnet14 float32",
    )
    # Measured in the same rounds: the plain network's speed is shared.
    assert undamped["second_images_per_s"] == library["second_images_per_s"]
    for row in pairs.values():
        low, high = row["speedup_range"]
        assert positive(low) and low <= row["speedup"] <= high
        assert positive(row["first_images_per_s"])


@pytest.mark.slow
def test_frameworks_quick_in_both_onednn_states_on_an_emulated_avx2_cpu(tmp_path):
    flags = ["--batch-size", "8", "--onednn", "both", "--emulate-avx2"]
    record, table = run_benchmark("frameworks", tmp_path, *flags)
    rows = {row["config"]: row for row in record["rows"]}
    configs = {"graph/off", "graph/on", "xla/off", "xla/on", "jax"}
    assert set(rows) == configs | ({"torch"} if record["torch"] else set())
    assert all(row["model"] == "in_resnet14" for row in rows.values())
    assert all(positive(row["images_per_s"]) for row in rows.values())
    assert all(len(row["ms_per_step_by_round"]) == 1 for row in rows.values())
    for mode in ("graph", "xla"):
        assert rows[f"{mode}/off"]["onednn"] == {
            "enabled": False,
            "reason": "set by the user (TF_ENABLE_ONEDNN_OPTS='0')",
        }
        assert rows[f"{mode}/on"]["onednn"]["enabled"] is True
    assert rows["jax"]["onednn"] is None
    # The cap took: oneDNN ran TensorFlow's convolution with AVX2 code.
    assert record["emulated_avx2"] and record["onednn_isa"]["tensorflow"].startswith(
        "Intel AVX2 ("
    )
    assert sum(row["auto"] for row in rows.values()) == 1
    assert record["reference"] == ("torch" if record["torch"] else "graph/off")
    assert rows[record["reference"]]["vs_reference"] == 1.0
    assert "| in_resnet14 | graph | off (forced) |" in table
    assert record["auto_rule"].startswith("auto:")


@pytest.mark.slow
def test_study_jobs_quick(tmp_path):
    record, table = run_benchmark("study_jobs", tmp_path)
    cores = record["machine"]["cores"]
    plans = [(r["jobs"], r["threads"]) for r in record["rows"]]
    assert plans == [(1, cores), (cores, 1)]  # (1, 1) would repeat (cores, 1)
    assert all(positive(r["seconds"]) for r in record["rows"])
    assert "1.00x" in table


@pytest.mark.slow
def test_autoattack_agreement_quick(tmp_path, tiny_model_path):
    """Both sides on 4 images of the untrained tiny model (ours only where
    torchattacks is not installed), judged the same way, resumed from
    the cache on a second run."""
    extra = ["--model", tiny_model_path, "--examples", "4", "--cache"]
    extra += [str(tmp_path / "parts")]
    record, table = run_benchmark("autoattack_agreement", tmp_path, *extra)
    (row,) = record["rows"]
    assert row["norm"] == "linf" and 0 <= row["ours_robust"] <= row["clean"]
    assert row["ours_invalid"] == 0  # every image in the ball and [0, 1]
    assert row["ours_forward_passes"] >= 4
    if record["torchattacks"]:
        assert row["torchattacks_invalid"] == 0
        assert (
            row["agreement"]
            == 1 - (row["only_ours_broke"] + row["only_theirs_broke"]) / 4
        )
    else:
        assert "agreement" not in row and "| - |" in table
    parts = sorted(p.name for p in (tmp_path / "parts").iterdir())
    # A second run reuses every finished side.
    run_script(
        "autoattack_agreement",
        "--quick",
        "--out",
        str(tmp_path / "again"),
        *extra,
    )
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == parts
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["rows"] == record["rows"]
