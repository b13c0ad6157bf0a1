"""Layers: the damped merge, the residual blocks built on it, fused BN."""

from keras_damped.layers.batch_norm import FusedBatchNormalization
from keras_damped.layers.blocks import BasicBlock
from keras_damped.layers.blocks import BottleneckBlock
from keras_damped.layers.damped_add import DampedAdd

__all__ = ["BasicBlock", "BottleneckBlock", "DampedAdd", "FusedBatchNormalization"]
