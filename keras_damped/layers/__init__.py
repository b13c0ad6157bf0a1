"""Layers: the damped merge and the residual blocks built on it."""

from keras_damped.layers.blocks import BasicBlock
from keras_damped.layers.blocks import BottleneckBlock
from keras_damped.layers.damped_add import DampedAdd

__all__ = ["BasicBlock", "BottleneckBlock", "DampedAdd"]
