"""Robustness: CleverHans attacks, AutoAttack, the CIFAR-10-C noise group, reports."""

from keras_damped.robustness.attacks import ATTACKS
from keras_damped.robustness.attacks import attack_fn
from keras_damped.robustness.attacks import logits_fn
from keras_damped.robustness.attacks import make_attack
from keras_damped.robustness.evaluate import evaluate
from keras_damped.robustness.evaluate import load_model_file
from keras_damped.robustness.evaluate import parse_eps
from keras_damped.robustness.report import RobustnessReport

__all__ = [
    "ATTACKS",
    "RobustnessReport",
    "attack_fn",
    "evaluate",
    "load_model_file",
    "logits_fn",
    "make_attack",
    "parse_eps",
]
