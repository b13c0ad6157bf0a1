"""Finished attack batches kept on disk, so an interrupted evaluation resumes.

An evaluation of a deep model runs for hours, almost all of it in the
attacks, and every attack batch has its own seed `(config.seed, batch
index)`: a batch's result does not depend on what ran before it. So
`evaluate(..., partial=FOLDER)` writes each finished batch into FOLDER, and
a later call with the same FOLDER, the same models (weights), the same test
images and the same settings reuses those batches instead of running them
again: the report is the one an uninterrupted call gives, with the number of
reused batches, the machines that ran them, the earlier calls (sessions)
they came from and the seconds they took there in its `resumed` record.

Neither Keras' `BackupAndRestore` (training epochs) nor TensorFlow's
checkpoints (variables) keep results of a loop that is not training, hence
this module.
"""

import datetime
import hashlib
import json
import logging
import os

import numpy as np

logger = logging.getLogger("keras_damped")

STAMP = "stamp.json"


def fingerprint(*arrays):
    """A SHA-256 of the arrays' shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def model_fingerprint(model):
    """The fingerprint of a Keras model's weights, in their order."""
    return fingerprint(*(np.asarray(w) for w in model.weights))


class PartialResults:
    """The folder of one evaluation's finished attack batches.

    Args:
        folder: where the batches go (created if missing).
        stamp: a JSON-serialisable record of everything the results depend
            on. Batches written under another stamp are deleted, with a log
            message, never reused; a folder with files but no stamp is
            refused (it is not ours to empty).
    """

    def __init__(self, folder, stamp):
        self.folder = os.fspath(folder)
        self.stamp = json.loads(json.dumps(stamp))
        # This call's name on the batches it writes: its start and process.
        now = datetime.datetime.now(datetime.timezone.utc)
        self.session = f"{now.isoformat(timespec='microseconds')} pid {os.getpid()}"
        self.reused, self.machines, self.sessions = 0, set(), set()
        self.seconds = {"wall": 0.0, "cpu": 0.0}
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, STAMP)
        if not os.path.isfile(path):
            # Empty, or only a stamp a kill cut short: ours to start.
            if set(os.listdir(self.folder)) - {STAMP + ".tmp"}:
                raise FileExistsError(
                    f"{self.folder} holds files but no {STAMP} of an "
                    "evaluation's kept batches; nothing was changed. Choose "
                    "another folder or empty this one."
                )
        else:
            for name in os.listdir(self.folder):
                if name.endswith(".tmp"):  # a write a kill cut short
                    os.remove(os.path.join(self.folder, name))
            with open(path) as f:
                if json.load(f) == self.stamp:
                    return
            stale = [n for n in os.listdir(self.folder) if n.endswith(".npz")]
            for name in stale:
                os.remove(os.path.join(self.folder, name))
            if stale:
                logger.info(
                    "%s: %d kept batches were from other settings, models or "
                    "images; deleted.",
                    self.folder,
                    len(stale),
                )
        _write_atomic(path, lambda f: f.write(json.dumps(self.stamp, indent=2)), "w")

    def part(self, *key):
        """The batches of one attack run: `key` names it (model, attack,
        radius...)."""
        return AttackBatches(self, "-".join(str(k) for k in key))

    def record(self):
        """What the report says of this resumption (None: nothing reused):
        the batches reused, the machines and the number of earlier calls
        (sessions) that computed them, and the wall and CPU seconds they
        took there (CPU None when a batch kept by a version before these
        records has none; such batches count as one session)."""
        if not self.reused:
            return None
        cpu = self.seconds["cpu"]
        return {
            "batches_reused": self.reused,
            "machines": sorted(self.machines),
            "sessions": len(self.sessions),
            "seconds": {
                "wall": round(self.seconds["wall"], 1),
                "cpu": None if cpu is None else round(cpu, 1),
            },
        }


class AttackBatches:
    """One attack run's batches within a `PartialResults` folder."""

    def __init__(self, results, name):
        self.results = results
        self.name = "".join(c if c.isalnum() or c in "._" else "_" for c in name)

    def _path(self, index):
        return os.path.join(self.results.folder, f"{self.name}-b{index}.npz")

    def load(self, index):
        """Batch `index`'s record as `save` got it, or None."""
        path = self._path(index)
        if not os.path.isfile(path):
            return None
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            record = {
                "robust": data["robust"],
                "stages": {s: data[f"stage_{s}"] for s in meta.pop("stages")},
                "kept": data["kept"] if "kept" in data.files else None,
            }
        results = self.results
        results.reused += 1
        results.machines.add(meta.pop("machine"))
        results.sessions.add(meta.pop("session", "unrecorded"))
        results.seconds["wall"] += meta["seconds"]
        cpu = meta.pop("cpu_seconds", None)
        if cpu is None or results.seconds["cpu"] is None:
            results.seconds["cpu"] = None
        else:
            results.seconds["cpu"] += cpu
        return record | meta

    def save(self, index, record, machine):
        """Keeps batch `index`'s record: the masks and images as arrays,
        the numbers as JSON (its wall and CPU seconds among them), the CPU
        that computed it and this call's session."""
        arrays = {"robust": record["robust"]}
        arrays |= {f"stage_{s}": m for s, m in record["stages"].items()}
        if record["kept"] is not None:
            arrays["kept"] = record["kept"]
        meta = {k: v for k, v in record.items() if k not in ("robust", "kept")}
        meta["stages"] = list(record["stages"])
        meta["machine"] = machine
        meta["session"] = self.results.session
        arrays["meta"] = np.array(json.dumps(meta, default=_plain))
        _write_atomic(self._path(index), lambda f: np.savez(f, **arrays), "wb")


def _plain(value):
    """A NumPy scalar as the Python number JSON takes."""
    return value.item()


def _write_atomic(path, write, mode):
    """Writes `path` through a temporary file: a kill leaves the old file or
    the new one, never half of one."""
    temporary = path + ".tmp"
    with open(temporary, mode) as f:
        write(f)
    os.replace(temporary, path)
