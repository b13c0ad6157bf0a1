"""The settings of a study, validated before any work is done."""

import dataclasses
import json

from keras_damped._fields import setting
from keras_damped.robustness.config import EvalConfig
from keras_damped.training.config import TrainConfig
from keras_damped.validators import non_negative_int
from keras_damped.validators import optional_positive_int

# The training seeds of a study unless told otherwise.
SEEDS = (0, 1, 2)
# Bumped when what a study folder holds changes meaning: 2 nests the
# training and evaluation settings (TrainConfig, EvalConfig); format 1 (flat)
# folders are read and resumed.
FORMAT = 2
# What decides what a run trains (TrainConfig fields): a study folder
# resumes only with the same.
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
# The study's landscape (`--landscape`): every run on the first 128 test
# images (or all of them if the evaluation has fewer), along its own
# sign-gradient direction and a shared random one, t in [-8/255, 8/255],
# 33 points.
LANDSCAPE = {"test_limit": 128, "T": 8 / 255, "points": 33, "points_2d": 11}
# Bumped when the evaluation code changes what the same settings compute, so
# cached evaluations are redone: 2, `jit_compile` means for the attacks what
# it means for training (revision 1 compiled every study's attacks with XLA,
# whatever the setting); 3, each AutoAttack stage draws from the seed and its
# own name (before, the stages drew one after the other from one stream); 4,
# AutoAttack runs FAB-T between APGD-T and Square (the standard sequence).
EVALUATION_REVISION = 4
# What an evaluation's result does not depend on (a cached one stays valid).
_EVALUATION_IRRELEVANT = ("data_dir", "examples_shown", "example_attack")


@dataclasses.dataclass
class StudyConfig:
    """Models x seeds, one training configuration, one evaluation configuration.

    `train` holds the settings every run shares (its `model`, `seed` and
    `run_dir` are filled in per run; `test_limit` is the validation set);
    `evaluation` is the `EvalConfig` of every run's evaluation (radii in
    pixel units). `baseline` is the model the differences are taken
    against (default: the first); `threads` the number of TensorFlow
    threads of each run (1; None: TensorFlow's default): a CPU run's numbers
    depend on it, so runs compared digit for digit share it. `landscape`
    adds the input-space loss landscape of every run (`LANDSCAPE`).
    `compare_with` is the folder of another study of the same models at
    another depth (its study.json): study.md then says how the effect of
    damping changes between the two (`keras_damped.study.depth_table`).
    """

    models: list = setting(help="presets; repeat or comma-separate")
    seeds: list = setting(help="comma-separated integers, the training seeds")
    out: str = setting(help="the study folder")
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    evaluation: EvalConfig = dataclasses.field(
        default_factory=lambda: EvalConfig(
            dataset="fashion_mnist", attacks=["fgsm", "pgd"]
        )
    )
    baseline: str | None = setting(
        None, help="the model differences are taken against (default: the first)"
    )
    threads: int | None = setting(
        1,
        help="TensorFlow threads per run (independent runs use the cores "
        "better than one run does; a run's numbers depend on it)",
    )
    landscape: bool = setting(
        False,
        help="also the input-space loss landscape of every run "
        "(OUT/landscape.json, plots/landscape_1d.png)",
    )
    compare_with: str | None = setting(
        None,
        help="another study's folder, of the same kinds of model at another "
        "depth: study.md then shows how the effect of damping changes between "
        "them",
    )

    def __post_init__(self):
        if self.baseline is None and self.models:
            self.baseline = self.models[0]

    def validate(self):
        """Raises ValueError naming the first bad setting and its valid choices."""
        from keras_damped.models.registry import list_models

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
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(
                "seeds must be a non-empty list of distinct integers >= 0. "
                f"Received: seeds={self.seeds!r}"
            )
        for seed in self.seeds:
            non_negative_int("seeds", seed)
        if self.baseline not in self.models:
            raise ValueError(
                f"baseline must be one of the models {self.models}. "
                f"Received: baseline={self.baseline!r}"
            )
        optional_positive_int("threads", self.threads)
        if self.compare_with is not None:
            import os

            if not os.path.isfile(os.path.join(self.compare_with, "study.json")):
                raise ValueError(
                    "compare_with must be a study folder with a study.json. "
                    f"Received: compare_with={self.compare_with!r}"
                )
        if self.evaluation.dataset != self.train.dataset:
            raise ValueError(
                "The study evaluates on the dataset it trains on. Received: "
                f"train dataset {self.train.dataset!r}, evaluation dataset "
                f"{self.evaluation.dataset!r}."
            )
        self.evaluation = self.evaluation.validate()
        self.train_config(self.models[0], self.seeds[0]).validate()
        return self

    def train_config(self, model, seed):
        """The `TrainConfig` of one run of the study."""
        return dataclasses.replace(
            self.train,
            model=model,
            seed=seed,
            run_dir=run_dir(self.out, model, seed),
            verbose=0,
        )

    def evaluation_settings(self):
        """What decides an evaluation's result (a cached one must match it)."""
        data = self.evaluation.to_dict()
        return {k: v for k, v in data.items() if k not in _EVALUATION_IRRELEVANT} | {
            "format": FORMAT,
            "revision": EVALUATION_REVISION,
        }

    def to_dict(self):
        return {
            "models": list(self.models),
            "seeds": list(self.seeds),
            "out": self.out,
            "baseline": self.baseline,
            "threads": self.threads,
            "landscape": self.landscape,
            "compare_with": self.compare_with,
            "train": self.train.to_dict(),
            "evaluation": self.evaluation.to_dict(),
            "format": FORMAT,
        }

    @classmethod
    def from_dict(cls, data):
        """A config from `to_dict()`'s output, or from a format-1 (flat) one."""
        if "train" not in data:
            data = _from_flat(data)
        return cls(
            models=data["models"],
            seeds=data["seeds"],
            out=data["out"],
            train=TrainConfig.from_dict(data["train"]),
            evaluation=EvalConfig.from_dict(data["evaluation"]),
            baseline=data.get("baseline"),
            threads=data.get("threads"),
            landscape=bool(data.get("landscape", False)),
            compare_with=data.get("compare_with"),
        )

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))


def _from_flat(data):
    """A format-1 study config (every setting at the top level, eps in
    units of 1/255, `limit` the test images, `eval_*` the evaluation's
    batch size and seed) in today's nested shape."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train = {k: v for k, v in data.items() if k in train_fields}
    train["train_limit"] = data.get("train_limit")
    train["test_limit"] = data.get("limit", 1000)
    evaluation = {
        "dataset": data.get("dataset", "fashion_mnist"),
        "test_limit": data.get("limit", 1000),
        "batch_size": data.get("eval_batch_size", 128),
        "seed": data.get("eval_seed", 0),
    }
    for key in (
        "attacks",
        "noises",
        "severities",
        "noise_levels",
        "noise_source",
        "data_dir",
        "protocols",
        "protocol_attacks",
        "attack_limit",
        "apgd_steps",
        "target_classes",
        "square_queries",
    ):
        if data.get(key) is not None:
            evaluation[key] = data[key]
    for key in ("eps", "protocol_eps"):
        if data.get(key) is not None:
            evaluation[key] = [e / 255 for e in data[key]]
    return {
        "models": data["models"],
        "seeds": data["seeds"],
        "out": data["out"],
        "baseline": data.get("baseline"),
        "threads": data.get("threads"),
        "train": train,
        "evaluation": evaluation,
    }


def run_dir(out, model, seed):
    import os

    return os.path.join(out, "runs", model, f"seed{seed}")
