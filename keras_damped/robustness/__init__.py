"""Robustness: one `Attack` interface and registry (CleverHans attacks,
AutoAttack, the authors' protocols, your own), the CIFAR-10-C noise group,
`evaluate` with its `EvalConfig`, reports."""

from keras_damped._extras import require

require("robustness", "robustness")

# The built-in attacks register themselves as a user's plug-in does: by
# importing their modules, which call register_attack.
from keras_damped.models.logits import logits_fn
from keras_damped.robustness import attacks  # noqa: F401
from keras_damped.robustness import protocols  # noqa: F401
from keras_damped.robustness.config import EvalConfig
from keras_damped.robustness.evaluate import evaluate
from keras_damped.robustness.registry import Attack
from keras_damped.robustness.registry import AttackContext
from keras_damped.robustness.registry import AttackResult
from keras_damped.robustness.registry import Budget
from keras_damped.robustness.registry import attack_names
from keras_damped.robustness.registry import make_attack
from keras_damped.robustness.registry import parse_attacks
from keras_damped.robustness.registry import register_attack
from keras_damped.robustness.registry import unregister_attack
from keras_damped.robustness.report import RobustnessReport

__all__ = [
    "Attack",
    "AttackContext",
    "AttackResult",
    "Budget",
    "EvalConfig",
    "RobustnessReport",
    "attack_names",
    "evaluate",
    "logits_fn",
    "make_attack",
    "parse_attacks",
    "register_attack",
    "unregister_attack",
]
