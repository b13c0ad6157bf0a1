"""TensorFlow's fused kernels for layers whose Keras form is unfused.

Imported lazily, only on the TensorFlow backend, by
`keras_damped.layers.FusedBatchNormalization`. Keras 3 writes batch
normalization as a chain of element-wise ops (cast, moments, scale, shift
and their gradients: about twenty passes over the activations per layer);
in TensorFlow's graph mode each is a separate kernel, and on CPU they cost
more than the convolutions once those run in bfloat16 (see benchmarks/).
`FusedBatchNormV3` does the same arithmetic in one forward and one backward
kernel (oneDNN on CPU, cuDNN on GPU).
"""

import tensorflow as tf


def fused_batch_norm(x, gamma, beta, mean, variance, epsilon, training):
    """Batch normalization of an NHWC tensor over its last axis.

    Returns `(y, batch_mean, batch_variance)` in training mode, with the
    biased batch variance (the one Keras keeps moving averages of), and
    `(y, None, None)` in inference mode, where `mean` and `variance` are
    used. `gamma`, `beta`, `mean`, `variance` are float32; `y` has the
    dtype of `x`.
    """
    if training:
        empty = tf.constant([], tf.float32)
        y, batch_mean, batch_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=gamma,
            offset=beta,
            mean=empty,
            variance=empty,
            epsilon=epsilon,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the unbiased (n - 1) variance for running
        # averages; Keras averages the biased one it normalizes with.
        shape = tf.shape(x)
        count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        batch_variance = batch_variance * (count - 1.0) / tf.maximum(count, 1.0)
        return y, tf.stop_gradient(batch_mean), tf.stop_gradient(batch_variance)
    y, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=gamma,
        offset=beta,
        mean=mean,
        variance=variance,
        epsilon=epsilon,
        exponential_avg_factor=1.0,
        data_format="NHWC",
        is_training=False,
    )
    return y, None, None
