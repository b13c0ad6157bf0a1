"""The settings of a training run, validated before any work is done."""

import dataclasses
import json
import math
import os

from keras_damped.data.pipeline import AUGMENTATIONS
from keras_damped.training.schedules import SCHEDULES

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
JIT_CHOICES = ("auto", "on", "off")
DISTRIBUTE_CHOICES = ("none", "mirrored", "multi_worker")
# The reference protocol (PAPER.md section 4).
PAPER_PROTOCOL = {
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "paper",
    "augment": "paper",
}


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; `validate()` checks them all.

    `model` is a preset name (built for the dataset's input shape and
    classes) or the path of a saved `.keras` model. `batch_size` is global:
    with `distribute` it is split across replicas.
    """

    model: str = "in_resnet20"
    dataset: str = "fashion_mnist"
    run_dir: str = "runs/train"
    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_damping: bool = True
    schedule: str = "paper"
    augment: str | None = "paper"
    jit_compile: str = "auto"
    precision: str = "float32"
    seed: int = 0
    limit: int | None = None
    test_limit: int | None = None
    validation_split: float = 0.0
    distribute: str = "none"
    data_dir: str | None = None
    verbose: int = 1

    def validate(self):
        """Raises ValueError naming the first bad setting and its valid choices."""
        from keras_damped.data.pipeline import dataset_info
        from keras_damped.models.registry import list_models

        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        for name in ("limit", "test_limit"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or self.seed < 0
        ):
            raise ValueError(
                f"seed must be an integer >= 0. Received: seed={self.seed!r}"
            )
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"{name} must be a finite number >= 0. Received: {name}={value!r}"
                )
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0. Received: lr={self.lr!r}")
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(
                "validation_split must be in [0, 1) (0 validates on the test "
                f"split). Received: validation_split={self.validation_split!r}"
            )
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("augment", self.augment, AUGMENTATIONS)
        _choice("jit_compile", self.jit_compile, JIT_CHOICES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("distribute", self.distribute, DISTRIBUTE_CHOICES)
        dataset_info(self.dataset)
        if self.dataset.startswith("cifar10_corrupted/"):
            raise ValueError(
                "cifar10_corrupted has only a test split; train on cifar10. "
                f"Received: dataset={self.dataset!r}"
            )
        if not self.model.endswith(".keras") and self.model not in list_models():
            raise ValueError(
                f"Unknown model. Expected a path to a .keras file or one of "
                f"{list_models()}. Received: model={self.model!r}"
            )
        if self.model.endswith(".keras") and not os.path.isfile(self.model):
            raise ValueError(f"No such model file. Received: model={self.model!r}")
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            data = json.load(f)
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.get("config", data).items() if k in fields})


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer. Received: {name}={value!r}"
        )


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Unknown {name}. Expected one of {choices}. Received: {name}={value!r}"
        )
