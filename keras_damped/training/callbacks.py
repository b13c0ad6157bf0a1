"""Callbacks of our own: only what Keras' callbacks do not do."""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_damped.models.inspect import damped_adds


class DampingMonitor(keras.callbacks.Callback):
    """Writes every learned lambda to TensorBoard at the end of each epoch.

    Keras' `TensorBoard` callback logs losses, metrics and the learning
    rate; this adds what it cannot know about: one scalar per damped block
    (`damping/stage2_block5`, the mean over channels for per-channel
    damping), a histogram of all lambdas (`damping/all`), and the run's
    configuration as a text table at the start.

    Args:
        log_dir: the folder of the event files (e.g. `runs/NAME/tb/damping`).
        config: an optional dict written once as a Markdown table.
    """

    def __init__(self, log_dir, config=None):
        super().__init__()
        self.log_dir = str(log_dir)
        self.config = config
        self._writer = None

    def _values(self):
        return {
            name: np.ravel(np.asarray(add.damping, dtype="float32"))
            for name, add in damped_adds(self.model, trainable_only=True).items()
        }

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)
        if self.config:
            rows = "\n".join(f"| {k} | `{v}` |" for k, v in self.config.items())
            with self._writer.as_default():
                tf.summary.text("config", f"| setting | value |\n|---|---|\n{rows}", 0)
            self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        values = self._values()
        if not values:
            return
        with self._writer.as_default():
            for name, lam in values.items():
                tf.summary.scalar(f"damping/{name}", float(lam.mean()), step=epoch)
            tf.summary.histogram(
                "damping/all", np.concatenate(list(values.values())), step=epoch
            )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class BackupUnlessDiverged(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that never replaces the last good state by a NaN one.

    Keras' callback saves at every epoch end, also the epoch in which
    `TerminateOnNaN` stopped training, which would overwrite the last good
    checkpoint with diverged weights. This one records where the loss first
    became non-finite (`diverged_at = (epoch, batch)`) and stops saving.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.diverged_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if (
            self.diverged_at is None
            and loss is not None
            and not math.isfinite(float(loss))
        ):
            self.diverged_at = (self._epoch, batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is None:
            super().on_epoch_end(epoch, logs)
