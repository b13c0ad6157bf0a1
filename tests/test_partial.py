"""An interrupted evaluation resumes from its kept attack batches to the
report an uninterrupted one gives."""

import json
import logging
import os

import numpy as np
import pytest

from keras_damped._cpu import cpu_name
from keras_damped.robustness import evaluate

# Every path that runs attacks: the pixel attacks (AutoAttack with its
# per-stage masks and counts), the large-radius check and an authors'
# protocol attack; 32 images in batches of 8.
SETTINGS = dict(
    attacks=["fgsm", "autoattack"],
    eps=[4 / 255, 16 / 255],
    noises=[],
    test_limit=32,
    batch_size=8,
    steps=3,
    apgd_steps=3,
    target_classes=2,
    square_queries=20,
    protocols=["pixel", "authors-2020-08"],
    protocol_attacks=["fgsm"],
    protocol_eps=[8 / 255],
)
BATCHES = 4 * (2 * 2 + 1 + 1)  # per attack and radius, the check, the protocol


class StopEvaluationError(Exception):
    pass


def _without_timing(report):
    """The report's data without what differs between two equal runs: when
    it was made and how long its parts took."""
    data = dict(report.data)
    data["settings"] = {k: v for k, v in data["settings"].items() if k != "created"}
    models = {}
    for name, entry in data["models"].items():
        models[name] = {k: v for k, v in entry.items() if k != "seconds"}
        assert set(entry["seconds"]) == {"fgsm", "autoattack"}
    data["models"] = models
    for key in ("seconds", "machine", "versions", "resumed"):
        data.pop(key, None)
    return data


@pytest.mark.slow
def test_an_interrupted_evaluation_resumes_to_the_same_report(
    trained_small_model, fm_images, tmp_path, caplog
):
    images, labels = fm_images
    common = dict(dataset=(images, labels), **SETTINGS)
    straight = evaluate(trained_small_model, progress=False, **common)
    assert "resumed" not in straight.data

    folder = tmp_path / "partial"

    def stop_halfway(done, total):
        if done > total / 2:
            raise StopEvaluationError

    with pytest.raises(StopEvaluationError):
        evaluate(trained_small_model, progress=stop_halfway, partial=folder, **common)
    kept = sorted(n for n in os.listdir(folder) if n.endswith(".npz"))
    assert 0 < len(kept) < BATCHES
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]

    earlier = _kept_meta(folder)
    assert len({m["session"] for m in earlier}) == 1
    resumed = evaluate(trained_small_model, progress=False, partial=folder, **common)
    assert resumed.data["resumed"] == {
        "batches_reused": len(kept),
        "machines": [cpu_name()],
        "sessions": 1,
        "seconds": {
            "wall": round(sum(m["seconds"] for m in earlier), 1),
            "cpu": round(sum(m["cpu_seconds"] for m in earlier), 1),
        },
    }
    assert all(m["cpu_seconds"] > 0 for m in earlier)
    assert _without_timing(resumed) == _without_timing(straight)
    for name in ("clean", "adversarial"):
        a, b = straight.examples[name], resumed.examples[name]
        if isinstance(a, dict):
            a, b = a["in_resnet14"], b["in_resnet14"]
        np.testing.assert_array_equal(a, b)
    assert len([n for n in os.listdir(folder) if n.endswith(".npz")]) == BATCHES
    # A second resumption reuses every batch and runs no attack.
    again = evaluate(trained_small_model, progress=False, partial=folder, **common)
    assert again.data["resumed"]["batches_reused"] == BATCHES
    assert again.data["resumed"]["sessions"] == 2  # the stopped call's, the resumed
    assert _without_timing(again) == _without_timing(straight)

    # Other settings: the kept batches are deleted, none is reused.
    with caplog.at_level(logging.INFO, logger="keras_damped"):
        other = evaluate(
            trained_small_model,
            progress=False,
            partial=folder,
            **(common | dict(attacks=["fgsm"], eps=[2 / 255], protocols=["pixel"])),
        )
    assert f"{BATCHES} kept batches were from other settings" in caplog.text
    assert "resumed" not in other.data
    assert len([n for n in os.listdir(folder) if n.endswith(".npz")]) == 4 + 4


def _kept_meta(folder):
    """The JSON part of every kept batch in `folder`."""
    meta = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".npz"):
            with np.load(os.path.join(folder, name)) as data:
                meta.append(json.loads(str(data["meta"])))
    return meta


def test_batches_kept_before_sessions_were_recorded_count_as_one(tmp_path):
    """A batch written by the version before the session and CPU records
    (as the depth-56 study's first resumed evaluations were) is reused and
    counted; the CPU seconds of such a resumption are unknown, not 0."""
    from keras_damped.robustness.partial import PartialResults

    def record(seconds, cpu):
        out = {"robust": np.ones(4, bool), "stages": {}, "kept": None}
        out |= {"seconds": seconds, "cost": None}
        return out | ({} if cpu is None else {"cpu_seconds": cpu})

    first = PartialResults(tmp_path, {"s": 1})
    first.part("m", "pgd").save(0, record(2.0, 1.5), "CPU A")
    first.part("m", "pgd").save(1, record(3.0, 2.5), "CPU A")
    second = PartialResults(tmp_path, {"s": 1})
    assert second.session != first.session
    second.part("m", "fgsm").save(0, record(1.0, 0.5), "CPU B")
    third = PartialResults(tmp_path, {"s": 1})
    for attack, index in (("pgd", 0), ("pgd", 1), ("fgsm", 0)):
        loaded = third.part("m", attack).load(index)
        assert "session" not in loaded and "cpu_seconds" not in loaded
    assert third.record() == {
        "batches_reused": 3,
        "machines": ["CPU A", "CPU B"],
        "sessions": 2,
        "seconds": {"wall": 6.0, "cpu": 4.5},
    }
    # The older format: no session, no CPU seconds.
    third.part("m", "square").save(0, record(4.0, None), "CPU C")
    (path,) = tmp_path.glob("*square-b0.npz")
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    del meta["session"]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    fourth = PartialResults(tmp_path, {"s": 1})
    fourth.part("m", "pgd").load(0)
    fourth.part("m", "square").load(0)
    assert fourth.record() == {
        "batches_reused": 2,
        "machines": ["CPU A", "CPU C"],
        "sessions": 2,
        "seconds": {"wall": 6.0, "cpu": None},
    }


def test_the_model_fingerprint_follows_the_weights(trained_small_model):
    import keras

    from keras_damped.robustness.partial import model_fingerprint

    copy = keras.models.clone_model(trained_small_model)
    copy.set_weights(trained_small_model.get_weights())
    assert model_fingerprint(copy) == model_fingerprint(trained_small_model)
    weights = copy.get_weights()
    weights[-1] = np.nextafter(weights[-1], np.float32(np.inf))
    copy.set_weights(weights)
    assert model_fingerprint(copy) != model_fingerprint(trained_small_model)


def test_a_folder_of_unknown_files_is_refused_and_left_alone(
    trained_small_model, fm_images, tmp_path
):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes-b0.npz").write_bytes(b"not ours")
    images, labels = fm_images
    with pytest.raises(FileExistsError, match=r"mine holds files but no stamp.json"):
        evaluate(
            trained_small_model,
            dataset=(images, labels),
            progress=False,
            partial=folder,
            **SETTINGS,
        )
    assert os.listdir(folder) == ["notes-b0.npz"]
    assert (folder / "notes-b0.npz").read_bytes() == b"not ours"
