"""Models: the damped ResNet and ResNeXt backbones and their presets."""

from keras_damped.models.convert import damp
from keras_damped.models.convert import residual_adds
from keras_damped.models.inspect import damped_adds
from keras_damped.models.inspect import damping_values
from keras_damped.models.reference import load_reference_weights
from keras_damped.models.registry import create_model
from keras_damped.models.registry import list_models
from keras_damped.models.resnet import DampedResNet
from keras_damped.models.resnext import DampedResNeXt

__all__ = [
    "DampedResNeXt",
    "DampedResNet",
    "create_model",
    "damp",
    "damped_adds",
    "damping_values",
    "list_models",
    "load_reference_weights",
    "residual_adds",
]
