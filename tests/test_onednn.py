"""TensorFlow's oneDNN switch (keras_damped/_onednn.py): where keras_damped
turns it on, that a user's own setting always wins, what runs record, and
that the numbers hold with oneDNN on and off."""

import json
import os
import subprocess
import sys

import pytest

from keras_damped import _onednn

AVX2 = {"sse4_2", "avx", "avx2", "fma"}
# A Skylake-SP Xeon: AVX-512 without VNNI, which TensorFlow leaves off.
SKYLAKE = AVX2 | {"avx512f", "avx512dq", "avx512bw", "avx512vl"}
SAPPHIRE_RAPIDS = SKYLAKE | {"avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}
ZEN4 = SKYLAKE | {"avx512_vnni", "avx512_bf16"}
ALDER_LAKE = AVX2 | {"avx_vnni"}


@pytest.mark.parametrize(
    "environ,flags,loaded,machine,value,reason",
    [
        ({}, AVX2, False, "x86_64", "1", "turned on by keras_damped"),
        ({}, SKYLAKE, False, "x86_64", "1", "turned on by keras_damped"),
        ({}, ZEN4, False, "x86_64", None, "default on this CPU (it has avx512_vnni)"),
        ({}, SAPPHIRE_RAPIDS, False, "x86_64", None, "(it has avx512_vnni)"),
        ({}, ALDER_LAKE, False, "x86_64", None, "(it has avx_vnni)"),
        ({}, AVX2, True, "x86_64", None, "TensorFlow was imported before"),
        ({}, {"asimd", "sve"}, False, "aarch64", None, "default on this CPU"),
        ({}, {"sse4_2", "avx"}, False, "x86_64", None, "default on this CPU"),
        ({"TF_ENABLE_ONEDNN_OPTS": "0"}, AVX2, False, "x86_64", None, "'0'"),
        ({"TF_ENABLE_ONEDNN_OPTS": "false"}, AVX2, False, "x86_64", None, "user"),
        ({"TF_ENABLE_ONEDNN_OPTS": "1"}, ZEN4, False, "x86_64", None, "user"),
        ({"TF_ENABLE_ONEDNN_OPTS": ""}, AVX2, False, "x86_64", "1", "keras_damped"),
    ],
)
def test_decision_by_cpu_and_environment(
    environ, flags, loaded, machine, value, reason
):
    got_value, got_reason = _onednn.decide(environ, flags, loaded, machine, "Linux")
    assert got_value == value
    assert reason in got_reason


def test_tensorflows_own_default_is_mirrored():
    """TensorFlow's Linux policy (port.cc, DefaultOneDnnPolicy): on for any of
    the six neural-network features, off otherwise, and never on Windows'
    rule here (keras_damped leaves other systems alone)."""
    for flag in _onednn.TF_DEFAULT_FLAGS:
        assert _onednn.tensorflow_default(AVX2 | {flag}, "Linux")
    assert not _onednn.tensorflow_default(SKYLAKE, "Linux")
    assert not _onednn.pays(AVX2, "x86_64", "Windows")
    assert not _onednn.pays(AVX2 | {"avx512_vnni"}, "x86_64", "Linux")


def test_this_process_state_is_tensorflows_own_answer():
    from tensorflow.python.util import _pywrap_util_port

    state = _onednn.state()
    assert state["enabled"] is bool(_pywrap_util_port.IsMklEnabled())
    assert state["reason"]


def test_late_tensorflow_is_reported_once_with_the_fix(monkeypatch):
    monkeypatch.setattr(_onednn, "_decision", {"reason": "off: ...", "late": True})
    monkeypatch.setattr(_onednn, "_enabled_now", lambda: False)
    monkeypatch.setattr(_onednn, "_warned", [])
    lines = []
    _onednn.warn_once(lines.append)
    _onednn.warn_once(lines.append)
    assert len(lines) == 1
    assert "TF_ENABLE_ONEDNN_OPTS=1" in lines[0]
    assert "before anything imports TensorFlow" in lines[0]


@pytest.mark.parametrize("late,enabled", [(False, False), (True, True)])
def test_no_advice_for_a_users_choice_or_when_on(monkeypatch, late, enabled):
    monkeypatch.setattr(_onednn, "_decision", {"reason": "user", "late": late})
    monkeypatch.setattr(_onednn, "_enabled_now", lambda: enabled)
    assert _onednn.advice() is None


def test_train_gives_the_advice(monkeypatch, caplog, tmp_path):
    """train() passes the advice to the log before any work (here it then
    refuses a bad setting)."""
    from keras_damped.training import TrainConfig
    from keras_damped.training import train

    monkeypatch.setattr(_onednn, "_decision", {"reason": "off: ...", "late": True})
    monkeypatch.setattr(_onednn, "_enabled_now", lambda: False)
    monkeypatch.setattr(_onednn, "_warned", [])
    config = TrainConfig(dataset="no_such_dataset", run_dir=str(tmp_path / "run"))
    monkeypatch.setattr(TrainConfig, "validate", lambda self: self)
    with caplog.at_level("WARNING", logger="keras_damped"):
        with pytest.raises(ValueError):
            train(config)
    assert [r.message for r in caplog.records if "TF_ENABLE_ONEDNN_OPTS=1" in r.message]
    assert not (tmp_path / "run").exists()


USER_OFF = """
import json, os, sys
import keras_damped.training
from keras_damped.training import TrainConfig, train
from tensorflow.python.util import _pywrap_util_port
train(TrainConfig(model=sys.argv[2], dataset="fashion_mnist", epochs=1,
      batch_size=64, train_limit=128, test_limit=64, jit_compile="off",
      augment=None, verbose=0, run_dir=sys.argv[1]))
print(json.dumps({"variable": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                  "mkl": bool(_pywrap_util_port.IsMklEnabled())}))
"""


def test_a_users_zero_is_kept_and_recorded(tmp_path, tiny_model_path):
    """TF_ENABLE_ONEDNN_OPTS=0 set by the user: keras_damped leaves it, oneDNN
    stays off, and the run's config.json says so and why."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")
    result = subprocess.run(
        [sys.executable, "-c", USER_OFF, str(run_dir), tiny_model_path],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"variable": "0", "mkl": False}
    record = json.loads((run_dir / "config.json").read_text())
    assert record["machine"]["onednn"] == {
        "enabled": False,
        "reason": "set by the user (TF_ENABLE_ONEDNN_OPTS='0')",
    }


def test_the_shared_run_records_this_process_state(trained_small_run):
    record = json.loads((trained_small_run / "config.json").read_text())
    assert record["machine"]["onednn"] == _onednn.state()


@pytest.mark.slow
def test_numbers_hold_with_onednn_flipped():
    """Every test marked `numerics` (parity with the reference network,
    equivalence with plain Keras and NumPy) passes at its tolerance with
    oneDNN in the other state too: the suite runs them in the state this
    machine gets, this test in the other one."""
    flipped = "0" if _onednn.state()["enabled"] else "1"
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=flipped)
    env.pop("PYTEST_XDIST_WORKER", None)
    tests = os.path.dirname(__file__)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider"]
        + ["-m", "numerics", "-W", "ignore::DeprecationWarning", tests],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(tests),
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"oneDNN: {'on' if flipped == '1' else 'off'}" in result.stdout
    assert " passed" in result.stdout and " failed" not in result.stdout
