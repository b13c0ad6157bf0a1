"""Keras batch normalization that runs as one fused kernel where it can."""

import keras
from keras import ops

_FUSED_DTYPES = ("float16", "bfloat16", "float32")


@keras.saving.register_keras_serializable(package="keras_damped")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with TensorFlow's fused kernel.

    Same arguments, weights, config and arithmetic as the Keras layer (the
    moving averages track the biased batch variance, as in Keras). On the
    TensorFlow backend, 4-D channels-last inputs without a mask, renorm or
    cross-replica statistics are normalized by `FusedBatchNormV3` (oneDNN
    on CPU, cuDNN on GPU): one kernel forward and one backward instead of
    Keras' chain of element-wise ops, which dominate a CPU training step
    in mixed precision (benchmarks/throughput.py measures it). Every other
    case, and every other backend, runs the Keras layer unchanged.

    Not for XLA: under `jit_compile=True` TensorFlow lowers the fused
    kernel to XLA's batch-norm expansion, whose training-mode variance
    (E[x^2] - E[x]^2 in float32) is imprecise; an In-ResNet-14 trained two
    epochs that way reached 53% test accuracy instead of 69-74%. The
    library's blocks therefore use Keras' own `BatchNormalization`; use
    this layer only in graph mode (`jit_compile=False`).

    Example:
    ```python
    x = keras.Input((32, 32, 16))
    y = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    ```
    """

    def _fusable(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and not self.renorm
            and not self.synchronized
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        from keras_damped.training.kernels import fused_batch_norm

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else ops.ones((channels,), "float32")
        beta = self.beta if self.center else ops.zeros((channels,), "float32")
        training = bool(training) and self.trainable
        outputs, mean, variance = fused_batch_norm(
            inputs,
            ops.cast(gamma, "float32"),
            ops.cast(beta, "float32"),
            ops.cast(self.moving_mean, "float32"),
            ops.cast(self.moving_variance, "float32"),
            self.epsilon,
            training,
        )
        if training:
            self.moving_mean.assign(
                self.moving_mean * self.momentum + mean * (1.0 - self.momentum)
            )
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
            )
        return ops.cast(outputs, self.compute_dtype)
