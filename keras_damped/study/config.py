"""The settings of a study, validated before any work is done."""

import dataclasses
import json
import math

from keras_damped.robustness.autoattack import APGD_STEPS
from keras_damped.robustness.autoattack import SQUARE_QUERIES
from keras_damped.robustness.autoattack import TARGET_CLASSES
from keras_damped.training.config import JIT_CHOICES
from keras_damped.training.config import PRECISIONS
from keras_damped.training.schedules import SCHEDULES

# Bumped when what a study folder holds changes meaning.
FORMAT = 1
# What decides what a run trains: a study folder resumes only with the same.
TRAINING_KEYS = (
    "dataset",
    "epochs",
    "train_limit",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "decay_damping",
    "schedule",
    "augment",
    "precision",
    "jit_compile",
)


@dataclasses.dataclass
class StudyConfig:
    """Models x seeds, one training configuration, one evaluation configuration.

    Training settings are those of `TrainConfig` (every run of the study
    shares them but the seed); `limit` is the number of test examples used
    for validation during training and for every evaluation (the same
    images for every run); `train_limit` the number of training examples
    (None: all). `eps` is in units of 1/255. `noise_levels` maps a noise to
    explicit parameters beyond the five severities (a Gaussian sweep).
    `threads` is the number of TensorFlow threads of each run (None:
    TensorFlow's default); a CPU run's numbers depend on it, so runs to be
    compared digit for digit share it.
    """

    models: list
    seeds: list
    out: str
    dataset: str = "fashion_mnist"
    epochs: int = 10
    train_limit: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_damping: bool = True
    schedule: str = "paper"
    augment: str | None = "paper"
    precision: str = "float32"
    jit_compile: str = "auto"
    attacks: list = dataclasses.field(default_factory=lambda: ["fgsm", "pgd"])
    eps: list = dataclasses.field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    noises: list = dataclasses.field(
        default_factory=lambda: ["gaussian", "shot", "impulse", "speckle"]
    )
    severities: list = dataclasses.field(default_factory=lambda: [1, 2, 3, 4, 5])
    noise_levels: dict = dataclasses.field(default_factory=dict)
    limit: int = 1000
    eval_batch_size: int = 128
    eval_seed: int = 0
    baseline: str | None = None
    noise_source: str = "auto"
    data_dir: str | None = None
    threads: int | None = None
    protocols: list = dataclasses.field(default_factory=lambda: ["pixel"])
    protocol_attacks: list | None = None
    protocol_eps: list | None = None
    attack_limit: int | None = None
    apgd_steps: int = APGD_STEPS
    target_classes: int = TARGET_CLASSES
    square_queries: int = SQUARE_QUERIES

    def __post_init__(self):
        if self.baseline is None and self.models:
            self.baseline = self.models[0]

    def validate(self):
        """Raises ValueError naming the first bad setting and its valid choices."""
        from keras_damped.data.corruptions import check_level
        from keras_damped.data.corruptions import check_noise
        from keras_damped.data.pipeline import dataset_info
        from keras_damped.models.registry import list_models
        from keras_damped.robustness.attacks import check_attack
        from keras_damped.robustness.protocols import check_protocols

        if not self.models or len(set(self.models)) != len(self.models):
            raise ValueError(
                "models must be a non-empty list of distinct preset names. "
                f"Received: models={self.models!r}"
            )
        unknown = [m for m in self.models if m not in list_models()]
        if unknown:
            raise ValueError(
                f"Unknown model(s) {unknown}. Expected names among {list_models()}."
            )
        if (
            not self.seeds
            or len(set(self.seeds)) != len(self.seeds)
            or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0
                for s in self.seeds
            )
        ):
            raise ValueError(
                "seeds must be a non-empty list of distinct integers >= 0. "
                f"Received: seeds={self.seeds!r}"
            )
        if self.baseline not in self.models:
            raise ValueError(
                f"baseline must be one of the models {self.models}. "
                f"Received: baseline={self.baseline!r}"
            )
        for name in ("epochs", "batch_size", "limit", "eval_batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("apgd_steps", "target_classes", "square_queries"):
            _positive_int(name, getattr(self, name))
        for name in ("train_limit", "threads", "attack_limit"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"Unknown precision. Expected one of {PRECISIONS}. "
                f"Received: precision={self.precision!r}"
            )
        if self.jit_compile not in JIT_CHOICES:
            raise ValueError(
                f"Unknown jit_compile. Expected one of {JIT_CHOICES}. "
                f"Received: jit_compile={self.jit_compile!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"Unknown schedule. Expected one of {SCHEDULES}. "
                f"Received: schedule={self.schedule!r}"
            )
        dataset_info(self.dataset)
        for attack in self.attacks:
            check_attack(attack)
        bad = [e for e in self.eps if not _finite_at_least(e, 0)]
        if bad or (self.attacks and not self.eps):
            raise ValueError(
                "eps must be a non-empty list of radii >= 0 in units of 1/255 "
                f"when there are attacks. Received: eps={self.eps!r}"
            )
        for noise in self.noises:
            check_noise(noise, 1)
        for severity in self.severities:
            check_noise("gaussian", severity)
        for noise, levels in self.noise_levels.items():
            for level in levels:
                check_level(noise, level)
        check_protocols(
            self.protocols,
            self.attacks if self.protocol_attacks is None else self.protocol_attacks,
        )
        bad = [e for e in self.protocol_eps or [] if not _finite_at_least(e, 0)]
        if bad:
            raise ValueError(
                "protocol_eps must be radii >= 0 in units of 1/255. "
                f"Received: protocol_eps={self.protocol_eps!r}"
            )
        self.train_config(self.models[0], self.seeds[0]).validate()
        return self

    def train_config(self, model, seed):
        """The `TrainConfig` of one run of the study."""
        from keras_damped.training.config import TrainConfig

        return TrainConfig(
            model=model,
            dataset=self.dataset,
            run_dir=run_dir(self.out, model, seed),
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            decay_damping=self.decay_damping,
            schedule=self.schedule,
            augment=self.augment,
            jit_compile=self.jit_compile,
            precision=self.precision,
            seed=seed,
            limit=self.train_limit,
            test_limit=self.limit,
            data_dir=self.data_dir,
            verbose=0,
        )

    def evaluation_settings(self):
        """What decides an evaluation's result (a cached one must match it)."""
        keys = (
            "dataset",
            "attacks",
            "eps",
            "noises",
            "severities",
            "noise_levels",
            "limit",
            "eval_batch_size",
            "eval_seed",
            "noise_source",
        )
        settings = {k: getattr(self, k) for k in keys}
        # Settings added later count only when they differ from their
        # defaults, so the evaluations of older study folders stay valid.
        if self.protocols != ["pixel"]:
            for key in ("protocols", "protocol_attacks", "protocol_eps"):
                settings[key] = getattr(self, key)
        defaults = {
            "attack_limit": None,
            "apgd_steps": APGD_STEPS,
            "target_classes": TARGET_CLASSES,
            "square_queries": SQUARE_QUERIES,
        }
        for key, default in defaults.items():
            if getattr(self, key) != default:
                settings[key] = getattr(self, key)
        return settings

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["format"] = FORMAT
        return data

    @classmethod
    def from_dict(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))


def run_dir(out, model, seed):
    import os

    return os.path.join(out, "runs", model, f"seed{seed}")


def _finite_at_least(value, minimum):
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= minimum
    )


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer. Received: {name}={value!r}"
        )
