"""Callbacks of our own: only what Keras' callbacks do not do."""

import logging
import math
import os
import shutil
import threading
import time

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

    It keeps Keras' `double_checkpoint`: a process killed while it writes
    the weights (a study's worker whose session ends) leaves the previous
    epoch's state, which the next run loads instead of failing on a
    truncated file.
    """

    def __init__(self, backup_dir):
        super().__init__(
            backup_dir,
            save_freq="epoch",
            delete_checkpoint=False,
            double_checkpoint=True,
        )
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

    def _save_model(self):
        with SAVING:
            super()._save_model()

    @staticmethod
    def recover(backup_dir):
        """Makes a checkpoint left unreadable by a kill usable before resuming.

        Keras falls back to the previous checkpoint only inside `fit`, after
        the caller has planned the run from the (newer) metadata; this does
        the same first, so the resumed run and its data agree on the epoch:
        the previous checkpoint replaces an unreadable one, or, without one,
        the run starts over.
        """
        import h5py

        weights = os.path.join(backup_dir, "latest.weights.h5")
        meta = os.path.join(backup_dir, "training_metadata.json")
        if not os.path.isfile(weights):
            return
        try:
            with h5py.File(weights, "r"):
                return
        except OSError:
            pass
        for path in (weights, meta):
            if os.path.isfile(path + ".bkp"):
                shutil.copyfile(path + ".bkp", path)
            elif os.path.isfile(path):
                os.remove(path)
        logging.getLogger("keras_damped").warning(
            "The checkpoint in %s was unreadable (a kill while it was written); "
            "resuming from the one before.",
            backup_dir,
        )


# Held while a checkpoint is written: a study worker whose study is gone
# waits for it before it exits, so it never leaves a truncated file.
SAVING = threading.Lock()


class ProgressLogger(keras.callbacks.Callback):
    """Logs one line at least every `interval` seconds and at each epoch end.

    Keras' own progress output is a bar (`verbose=1`, unreadable in a log
    file) or one line per epoch (`verbose=2`, silent for minutes on a long
    epoch); long unattended runs need a line every so often with the step,
    the loss and the elapsed time.

    Args:
        label: the text that starts every line (e.g. `in_resnet20 seed 0`).
        interval: seconds between two lines within an epoch.
        logger: a `logging.Logger` (default: `keras_damped`).
    """

    def __init__(self, label, interval=30.0, logger=None):
        super().__init__()
        self.label = label
        self.interval = float(interval)
        self.logger = logger or logging.getLogger("keras_damped")
        self._start = self._last = 0.0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._start = self._last = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _line(self, text):
        self._last = time.monotonic()
        elapsed = self._last - self._start
        self.logger.info("  %s: %s (%.0f s)", self.label, text, elapsed)

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self._last >= self.interval:
            steps = self.params.get("steps") or "?"
            loss = (logs or {}).get("loss")
            loss = "" if loss is None else f", loss {float(loss):.4f}"
            self._line(
                f"epoch {self._epoch + 1}/{self.params.get('epochs')}, "
                f"step {batch + 1}/{steps}{loss}"
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [
            f"{key} {float(logs[key]):.4f}"
            for key in ("loss", "accuracy", "val_accuracy")
            if key in logs
        ]
        self._line(
            f"epoch {epoch + 1}/{self.params.get('epochs')} done, " + ", ".join(parts)
        )
