"""Work-arounds for Keras 3 under MultiWorkerMirroredStrategy.

Keras 3's TensorFlow trainer breaks in two places under
`tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585,
tensorflow/tensorflow#72388, open as of Keras 3.15):

1. `fit()` first builds the model symbolically from a batch that it reduces
   eagerly across workers, which fails on the per-replica input.
2. The per-step logs (scalar loss and metrics) are averaged with
   `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars.

`multi_worker_fit` builds the model and optimizer inside the strategy's
scope beforehand and, for the duration of the fit only, averages scalar
logs over replicas with `axis=None`. Everything else is Keras' own fit
loop and TensorFlow's own collectives. Remove when Keras fixes the issue.
"""

import contextlib

import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer


def _reduce_scalars_too(original):
    def reduce_per_replica(values, strategy, reduction):
        if reduction in (
            "auto",
            "mean",
        ) and tf_trainer._collective_all_reduce_multi_worker(strategy):

            def mean(value):
                if tf_trainer._is_per_replica_instance(value) or tf.is_tensor(value):
                    axis = None if value.shape.rank == 0 else 0
                    return strategy.reduce("MEAN", value, axis=axis)
                return value

            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    return reduce_per_replica


@contextlib.contextmanager
def multi_worker_fit(model, strategy, sample_batch):
    """Prepares `model` so that `model.fit` runs under a multi-worker strategy."""
    with strategy.scope():
        model._symbolic_build(data_batch=sample_batch)
    saved_strategy = model._distribute_strategy
    original = tf_trainer.reduce_per_replica
    model._distribute_strategy = None  # fit() then uses the ambient strategy
    tf_trainer.reduce_per_replica = _reduce_scalars_too(original)
    try:
        with strategy.scope():
            yield
    finally:
        tf_trainer.reduce_per_replica = original
        model._distribute_strategy = saved_strategy
