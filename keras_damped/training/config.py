"""The settings of a training run, validated before any work is done."""

import dataclasses
import json
import os

from keras_damped._fields import setting
from keras_damped.data.pipeline import AUGMENTATIONS
from keras_damped.training.schedules import SCHEDULES
from keras_damped.validators import choice
from keras_damped.validators import finite_number
from keras_damped.validators import non_negative_int
from keras_damped.validators import optional_positive_int
from keras_damped.validators import positive_int

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
JIT_CHOICES = ("auto", "on", "off")
DISTRIBUTE_CHOICES = ("none", "mirrored", "multi_worker")
# The reference protocol (docs/paper.md section 4).
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
    with `distribute` it is split across replicas. `train_limit` and
    `test_limit` are the numbers of training and test (validation) images
    (None: all); a run folder written before `train_limit` was named so
    stores it as `limit`.
    """

    model: str = setting(
        "in_resnet20", help="preset name (see `keras-damped models`) or a .keras file"
    )
    dataset: str = setting("fashion_mnist", help="cifar10, cifar100 or fashion_mnist")
    run_dir: str = setting("runs/train", help="the run folder to write")
    epochs: int = setting(160, help="passes over the training set")
    batch_size: int = setting(128, help="global batch size (split across replicas)")
    lr: float = setting(0.1, help="initial learning rate")
    momentum: float = setting(0.9, help="SGD momentum")
    weight_decay: float = setting(
        1e-4, help="coupled L2 decay, as the reference's PyTorch SGD"
    )
    decay_damping: bool = setting(
        True, help="apply weight decay to the damping weights too"
    )
    schedule: str = setting("paper", help="learning-rate schedule")
    augment: str | None = setting("paper", help="paper, standard or none")
    jit_compile: str = setting(
        "auto",
        help="compile with XLA: auto (on accelerators and on the CPUs where XLA "
        "is faster), on or off",
    )
    precision: str = setting(
        "float32", help="float32, mixed_bfloat16, mixed_float16 or auto"
    )
    seed: int = setting(
        0, help="seeds the weights, the data order and the augmentation"
    )
    train_limit: int | None = setting(
        None, help="train on the first N training examples (default: all)"
    )
    test_limit: int | None = setting(
        None, help="validate on the first N test examples (default: all)"
    )
    validation_split: float = setting(
        0.0,
        help="hold out this fraction of the training set instead of validating "
        "on the test split",
    )
    distribute: str = setting(
        "none", help="none, mirrored (the local devices) or multi_worker (TF_CONFIG)"
    )
    data_dir: str | None = setting(None, help="TFDS data folder")
    verbose: int = setting(
        1, help="Keras progress: 0 silent, 1 bar, 2 a line per epoch"
    )

    def validate(self):
        """Raises ValueError naming the first bad setting and its valid choices."""
        from keras_damped.data.pipeline import dataset_info
        from keras_damped.models.registry import list_models

        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        for name in ("train_limit", "test_limit"):
            optional_positive_int(name, getattr(self, name))
        non_negative_int("seed", self.seed)
        for name in ("lr", "momentum", "weight_decay"):
            finite_number(name, getattr(self, name), minimum=0)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0. Received: lr={self.lr!r}")
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(
                "validation_split must be in [0, 1) (0 validates on the test "
                f"split). Received: validation_split={self.validation_split!r}"
            )
        choice("schedule", self.schedule, SCHEDULES)
        choice("augment", self.augment, AUGMENTATIONS)
        choice("jit_compile", self.jit_compile, JIT_CHOICES)
        choice("precision", self.precision, PRECISIONS)
        choice("distribute", self.distribute, DISTRIBUTE_CHOICES)
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
    def from_dict(cls, data):
        """A config from `to_dict()`'s output, also of older versions."""
        data = legacy_names(data)
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            data = json.load(f)
        return cls.from_dict(data.get("config", data))


def legacy_names(data):
    """A stored run config with today's names (`limit` became `train_limit`)."""
    data = dict(data)
    if "limit" in data and "train_limit" not in data:
        data["train_limit"] = data.pop("limit")
    return data
