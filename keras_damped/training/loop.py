"""`train()`: the paper's protocol with crash-safe, fully logged runs."""

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_damped import _onednn
from keras_damped._versions import library_versions
from keras_damped._versions import machine_record
from keras_damped.data.pipeline import dataset_info
from keras_damped.data.pipeline import load_arrays
from keras_damped.data.pipeline import make_dataset
from keras_damped.data.pipeline import steps_per_epoch
from keras_damped.optimizers import ReferenceSGD
from keras_damped.training.callbacks import BackupUnlessDiverged
from keras_damped.training.callbacks import DampingMonitor
from keras_damped.training.compat import multi_worker_fit
from keras_damped.training.config import legacy_names
from keras_damped.training.schedules import add_weight_decay
from keras_damped.training.schedules import learning_rate_schedule
from keras_damped.training.schedules import paper_switch_steps

logger = logging.getLogger("keras_damped")

# Settings that define a run's state: a resumed run must keep them.
STATE_KEYS = (
    "model",
    "dataset",
    "seed",
    "batch_size",
    "train_limit",
    "validation_split",
    "augment",
)


class RunDirExistsError(FileExistsError):
    """The run folder holds another or a finished run; nothing was touched."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    history: dict
    run_dir: str
    initial_epoch: int


def resolve_jit_compile(setting, replicas=1):
    """`auto` compiles with XLA on GPUs and TPUs, and on CPUs where
    TensorFlow's oneDNN kernels are off, when one replica trains
    (`replicas`: the strategy's replicas in sync).

    The rule comes from measurements of in_resnet20 and in_resnet110
    training steps (README, Performance: `benchmarks/frameworks.py
    --onednn both`). With oneDNN on, its native NHWC convolutions make
    TensorFlow's graph mode faster than XLA's CPU backend, which spends half
    of its kernel time in layout transposes: 1.24x (depth 20) and 1.43x
    (depth 110) on an AVX-512 EPYC, 1.37x and 1.16x on an AVX2-only CPU
    (emulated). keras_damped turns oneDNN on wherever TensorFlow would
    leave it off on an x86 CPU (keras_damped/_onednn.py), so graph mode is
    the CPU default; where oneDNN is off (a user's TF_ENABLE_ONEDNN_OPTS=0,
    other CPUs) XLA is faster than TensorFlow's Eigen kernels (1.31x and
    1.08x on the emulated AVX2-only CPU). Several CPU replicas (`mirrored`
    over CPU devices, `multi_worker`) train in graph mode: TensorFlow's XLA has no CPU
    collectives ("Collectives are not yet implemented for CPU devices when
    compiling with XLA"), so `on` is refused there.
    """
    return _jit_decision(setting, replicas)[0]


def _jit_decision(setting, replicas=1, onednn=None):
    """(use XLA?, the reason, for the run's config.json); `onednn`: whether
    TensorFlow's oneDNN kernels are on (default: this process's state)."""
    accelerator = tf.config.list_physical_devices(
        "GPU"
    ) or tf.config.list_logical_devices("TPU")
    if replicas > 1 and not accelerator and setting == "on":
        raise ValueError(
            f"jit_compile='on' cannot train {replicas} CPU replicas: TensorFlow's "
            "XLA has no CPU collectives. Use jit_compile='auto' or 'off' (both "
            "train them in graph mode)."
        )
    if setting in ("on", "off"):
        return setting == "on", f"jit_compile={setting!r}"
    if accelerator:
        return True, "auto: XLA on an accelerator"
    if replicas > 1:
        return False, "auto: graph mode for CPU replicas (XLA has no CPU collectives)"
    if onednn is None:
        onednn = _onednn.state()["enabled"]
    if onednn:
        return False, "auto: graph mode on a CPU with oneDNN on (oneDNN is faster)"
    return True, "auto: XLA on a CPU with oneDNN off (XLA is faster)"


def resolve_precision(setting):
    """`auto` picks the fastest precision that trains as well as float32.

    GPUs: mixed_bfloat16 from compute capability 8.0 (bfloat16 tensor
    cores), mixed_float16 on 7.x, float32 before; TPUs: mixed_bfloat16.
    CPUs: float32. On the 2-core AVX512_BF16 EPYC of benchmarks/,
    mixed_bfloat16 trains in_resnet110's synthetic step only 1.2x faster
    (Keras' float32 batch-norm chain and its casts take what the bfloat16
    convolutions save), trains in_resnet20 on Fashion-MNIST 0.91-1.04x as
    fast per epoch end to end and ends 1.36 points below float32;
    mixed_float16 has no fast CPU path (several times slower).
    benchmarks/speedups.py, benchmarks/precision_check.py and
    benchmarks/profile_step.py measure it.
    """
    if setting != "auto":
        return setting
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        major = (details.get("compute_capability") or (0, 0))[0]
        if major >= 8:
            return "mixed_bfloat16"
        return "mixed_float16" if major == 7 else "float32"
    if tf.config.list_logical_devices("TPU"):
        return "mixed_bfloat16"
    return "float32"


def intra_op_threads():
    """The intra-op thread count TensorFlow runs with in this process: the
    one set through `tf.config`, else `TF_NUM_INTRAOP_THREADS` (which
    TensorFlow reads when the config leaves it at 0), else 0 (its default,
    one per core)."""
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    if threads:
        return threads
    value = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    return int(value) if value.isdigit() else 0


def use_cpu_threads(threads):
    """Runs TensorFlow's kernels on `threads` threads in this process.

    A CPU run's numbers depend on the intra-op thread count (oneDNN splits
    its reductions by thread), not on the inter-op count; runs that must
    agree digit for digit need the same count. TensorFlow fixes both when
    it first executes something: after that, a different count is kept as
    it is and a warning says so.

    Args:
        threads: a positive integer, or None to keep TensorFlow's default.

    Returns:
        The intra-op thread count in effect (0: TensorFlow's default, one
        per core).
    """
    current = intra_op_threads()
    if threads is None or threads == current:
        return current
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logger.warning(
            "TensorFlow already runs in this process with %s intra-op threads; "
            "threads=%d cannot take effect (set it before TensorFlow executes "
            "anything, e.g. from the keras-damped command).",
            current or "its default",
            threads,
        )
        return current
    return threads


def _switch_record(config, steps):
    """Where the paper schedule divides the rate (None for other schedules)."""
    if config.schedule != "paper":
        return None
    switch = paper_switch_steps(config.epochs, steps)
    return {
        "lr": [config.lr * 0.1, config.lr * 0.01],
        "step": switch,
        "epoch": [round(s / steps, 4) for s in switch],
    }


def make_strategy(kind):
    """The tf.distribute strategy for `none`, `mirrored` or `multi_worker`."""
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "distribute='multi_worker' needs the TF_CONFIG environment "
                "variable describing the cluster (see "
                "examples/distributed_training.py)."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _is_chief(strategy):
    return strategy.extended.should_checkpoint


def _checkpoint_epoch(checkpoints):
    """The epochs a `BackupAndRestore` folder holds, or None without one."""
    meta = os.path.join(checkpoints, "training_metadata.json")
    if not os.path.isfile(meta):
        return None
    with open(meta) as f:
        return int(json.load(f)["epoch"])


def _run_state(run_dir):
    """None (empty or absent), or (config dict, finished?, completed epochs)."""
    if not os.path.isdir(run_dir) or not os.listdir(run_dir):
        return None
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        return {}, True, 0
    with open(config_path) as f:
        stored = json.load(f)
    epochs_done = _checkpoint_epoch(os.path.join(run_dir, "checkpoints")) or 0
    finished = os.path.isfile(os.path.join(run_dir, "model.keras"))
    return legacy_names(stored.get("config", {})), finished, epochs_done


def _previous_record(run_dir):
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _check_run_dir(config, resume, overwrite):
    """Decides fresh start / resume / refusal before anything is written."""
    if resume and overwrite:
        raise ValueError("Pass either resume or overwrite, not both.")
    state = _run_state(config.run_dir)
    if state is None or overwrite:
        return 0
    stored, finished, epochs_done = state
    same = bool(stored) and all(stored.get(k) == getattr(config, k) for k in STATE_KEYS)
    changed = {
        k: (stored.get(k), getattr(config, k))
        for k in STATE_KEYS
        if stored.get(k) != getattr(config, k)
    }
    if resume and not same:
        raise RunDirExistsError(
            f"{config.run_dir} holds a run with other settings {changed} "
            "(stored, requested); it cannot be resumed with these. Use another "
            "--out, or --overwrite to replace it."
        )
    if resume or (same and not finished and stored == config.to_dict()):
        return epochs_done
    raise RunDirExistsError(
        f"{config.run_dir} already holds a "
        f"{'finished' if finished else 'different'} run; nothing was changed. "
        "Pass --resume to continue it, --overwrite to replace it, or choose "
        "another --out."
    )


def _build_model(config, info):
    from keras_damped.models.registry import create_model

    if config.model.endswith(".keras"):
        try:
            model = keras.saving.load_model(config.model, compile=False)
        except Exception as error:
            raise ValueError(
                f"Cannot load the model file {config.model!r}: {error}"
            ) from None
        expected = (None, *info.input_shape)
        if tuple(model.input_shape) != expected or model.output_shape[-1] != (
            info.num_classes
        ):
            raise ValueError(
                f"The model {config.model!r} takes {model.input_shape} and "
                f"predicts {model.output_shape[-1]} classes, but {info.name} has "
                f"images {expected} and {info.num_classes} classes."
            )
        return model
    return create_model(
        config.model,
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        normalization=info.normalization,
    )


def train(config, resume=False, overwrite=False, callbacks=None):
    """Trains a model by `config` and writes its run folder.

    The run folder gets `config.json`, `tb/` (TensorBoard: `train/` and
    `validation/` from Keras' callback, `damping/` with one scalar per damped
    block, the histogram of lambdas and the config), `checkpoints/` (Keras
    `BackupAndRestore` state, one per epoch) and `model.keras`.

    A run folder that holds a finished run, or a different one, is refused
    unless `resume` or `overwrite`; an unfinished run with the same settings
    (a killed process) resumes from its last completed epoch. Everything is
    validated and the data loaded before the folder is touched.

    Returns:
        A `TrainResult` with the model, the Keras history dict, the run
        folder and the epoch the run (re)started at.

    Raises:
        ValueError: a bad setting. RunDirExistsError: the folder is taken.
        DatasetUnavailableError: the data cannot be had.
        TrainingDivergedError: the loss became NaN (checkpoint kept).

    `callbacks` are extra Keras callbacks, added after the run's own.
    """
    config.validate()
    _onednn.warn_once(logger.warning)
    info = dataset_info(config.dataset)
    strategy = make_strategy(config.distribute)
    jit, jit_reason = _jit_decision(config.jit_compile, strategy.num_replicas_in_sync)
    chief = _is_chief(strategy)
    # Only the chief owns the run folder; other workers keep scratch state.
    if chief and not overwrite:
        BackupUnlessDiverged.recover(os.path.join(config.run_dir, "checkpoints"))
    initial_epoch = _agreed_epoch(
        config, strategy, chief, lambda: _check_run_dir(config, resume, overwrite)
    )
    previous = _previous_record(config.run_dir) if chief and not overwrite else None
    data = _load_data(config)
    steps = steps_per_epoch(len(data[0]), config.batch_size)
    keras.utils.set_random_seed(config.seed)
    precision = resolve_precision(config.precision)
    model, decayed = _compiled_model(config, info, strategy, steps, jit, precision)
    if chief:
        resolved = {
            "jit_compile": jit,
            "jit_compile_rule": jit_reason,
            "precision": precision,
            "decayed_weights": decayed,
        }
        resolved = _resolved(config, info, strategy, model, data, steps, resolved)
        _write_record(config, overwrite, resolved, initial_epoch, previous)
        backup_dir = os.path.join(config.run_dir, "checkpoints")
    else:
        backup_dir = _worker_scratch(config, initial_epoch)
    try:
        return _train_from(
            config, model, strategy, data, steps, initial_epoch, backup_dir, callbacks
        )
    finally:
        if not chief:  # never read again: a resumed worker copies worker 0's
            shutil.rmtree(backup_dir, ignore_errors=True)


def _agreed_epoch(config, strategy, chief, decide):
    """The epoch the run starts at, as worker 0 decides it, on every worker.

    Worker 0 alone judges the run folder (`decide`). Under `multi_worker` the
    other workers learn its answer through one all-reduce, so that every
    worker takes the same steps, or all of them stop when worker 0 refuses
    the folder (worker 0 raises its own error after the all-reduce).
    """
    if config.distribute != "multi_worker":
        return decide()
    refusal, epoch = None, 0
    if chief:
        try:
            epoch = decide()
        except (ValueError, RunDirExistsError) as error:
            refusal, epoch = error, -1

    def first_replica_says():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.where(tf.equal(replica, 0), float(epoch), 0.0)

    @tf.function  # eager collectives warn of their overhead
    def agree():
        return strategy.reduce("SUM", strategy.run(first_replica_says), axis=None)

    agreed = int(round(float(agree())))
    if refusal is not None:
        raise refusal
    if agreed < 0:
        raise RunDirExistsError(
            f"Worker 0 refused the run folder {config.run_dir}; its own "
            "message says why. Nothing was changed."
        )
    return agreed


def _worker_scratch(config, initial_epoch):
    """A non-chief worker's checkpoint folder: a fresh temporary one and,
    when the run resumes, a copy of worker 0's checkpoint in it, so that
    every worker restores the same weights, optimizer state and epoch (the
    run folder must then be visible to every worker, as for Keras' own
    multi-worker backups)."""
    source = os.path.join(config.run_dir, "checkpoints")
    if initial_epoch:
        found = _checkpoint_epoch(source)
        if found != initial_epoch:
            seen = "no checkpoint" if found is None else f"epoch {found}'s checkpoint"
            raise ValueError(
                f"Worker 0 resumes {config.run_dir} after epoch {initial_epoch}, "
                f"but this worker finds {seen} in {source}: a multi-worker run "
                "resumes only where every worker sees the run folder (a shared "
                "file system)."
            )
    scratch = tempfile.mkdtemp(prefix="keras_damped_worker_")
    if initial_epoch:
        shutil.copytree(source, scratch, dirs_exist_ok=True)
    return scratch


def _train_from(
    config, model, strategy, data, steps, initial_epoch, backup_dir, callbacks
):
    """`train()` from the epoch it starts at: fit, then save the model."""
    chief = _is_chief(strategy)
    backup = BackupUnlessDiverged(backup_dir)
    fit_callbacks = _run_callbacks(config, chief, backup, callbacks)
    if initial_epoch:
        logger.info("Resuming %s after epoch %d.", config.run_dir, initial_epoch)
    history = _fit(config, model, strategy, data, steps, initial_epoch, fit_callbacks)
    if backup.diverged_at is not None:
        epoch, batch = backup.diverged_at
        raise TrainingDivergedError(
            f"Training diverged: the loss became NaN or infinite at epoch "
            f"{epoch + 1}, batch {batch + 1}, and TerminateOnNaN stopped it. The "
            f"last good checkpoint (after epoch {epoch}) is kept in "
            f"{os.path.join(config.run_dir, 'checkpoints')}; lower --lr and "
            "continue with --resume."
        )
    run_dir = config.run_dir
    model_path = os.path.join(run_dir, "model.keras")
    if initial_epoch >= config.epochs:
        # Nothing left to train: restore the finished state exactly as fit()
        # would (weights, optimizer state) instead of saving fresh weights.
        backup.set_model(model)
        backup.on_train_begin()
        if chief and os.path.isfile(model_path):
            return TrainResult(model, history, run_dir, initial_epoch)
    if chief:
        model.save(model_path)
    return TrainResult(model, history, run_dir, initial_epoch)


def _load_data(config):
    """(images, labels, validation images, validation labels): the training
    split, and the test split or the end of the training split (with
    `validation_split`) for validation."""
    images, labels = load_arrays(
        config.dataset, "train", config.data_dir, config.train_limit
    )
    if config.validation_split:
        cut = int(round(len(images) * (1 - config.validation_split)))
        val_images, val_labels = images[cut:], labels[cut:]
        images, labels = images[:cut], labels[:cut]
    else:
        val_images, val_labels = load_arrays(
            config.dataset, "test", config.data_dir, config.test_limit
        )
    if len(images) == 0 or len(val_images) == 0:
        raise ValueError(
            f"validation_split={config.validation_split} leaves no training or "
            f"validation examples of {len(images) + len(val_images)}."
        )
    return images, labels, val_images, val_labels


def _compiled_model(config, info, strategy, steps, jit, precision):
    """The model, weight decay added and compiled with the reference SGD and
    the schedule, under `precision`, in `strategy`'s scope; returns it and
    the number of decayed weights."""
    keras.config.set_dtype_policy(precision)
    try:
        with strategy.scope():
            model = _build_model(config, info)
            decayed = add_weight_decay(model, config.weight_decay, config.decay_damping)
            optimizer = ReferenceSGD(
                learning_rate_schedule(
                    config.schedule, config.lr, config.epochs, steps
                ),
                momentum=config.momentum,
            )
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[
                    keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                    keras.metrics.SparseCategoricalCrossentropy(
                        from_logits=True, name="cross_entropy"
                    ),
                ],
                jit_compile=jit,
            )
            # Keras builds the optimizer's slots inside the first trace of the
            # training step when no strategy is set, and TensorFlow then traces
            # that step a second time without variable creation; built here,
            # the step is traced once (2-3 s less per run on 2 CPU cores).
            # model.optimizer: under mixed_float16, the loss-scale wrapper.
            model.optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy("float32")
    return model, decayed


def _resolved(config, info, strategy, model, data, steps, decided):
    """config.json's `resolved`: what the settings turned out to be here."""
    return {
        "jit_compile": decided["jit_compile"],
        "jit_compile_rule": decided["jit_compile_rule"],
        "intra_op_threads": intra_op_threads() or "default",
        "precision": decided["precision"],
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "train_examples": len(data[0]),
        "validation_examples": len(data[2]),
        "steps_per_epoch": steps,
        "lr_switch": _switch_record(config, steps),
        "replicas": strategy.num_replicas_in_sync,
        "decayed_weights": decided["decayed_weights"],
        "weight_decay_kind": "coupled L2 (as PyTorch SGD)",
        "parameters": model.count_params(),
    }


def _write_record(config, overwrite, resolved, initial_epoch, previous):
    """The run folder (emptied first with `overwrite`) and its config.json."""
    run_dir = config.run_dir
    if overwrite and os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    record = {
        "config": config.to_dict(),
        "resolved": resolved,
        "versions": library_versions(),
        "machine": machine_record(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "resumed_at_epoch": initial_epoch or None,
        "previous": previous,
    }
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(record, f, indent=2)


def _run_callbacks(config, chief, backup, callbacks):
    """The run's callbacks (checkpoints, NaN stop, and on the chief the
    TensorBoard logs and the damping monitor), then the caller's."""
    fit_callbacks = [backup, keras.callbacks.TerminateOnNaN()]
    if chief:
        tb = os.path.join(config.run_dir, "tb")
        fit_callbacks += [
            keras.callbacks.TensorBoard(tb, write_graph=False),
            DampingMonitor(os.path.join(tb, "damping"), config.to_dict()),
        ]
    return fit_callbacks + list(callbacks or [])


def _fit(config, model, strategy, data, steps, initial_epoch, callbacks):
    """Keras' fit over the epochs left; its history ({} when none is left)."""
    images, labels, val_images, val_labels = data
    train_data = make_dataset(
        images,
        labels,
        config.batch_size,
        config.augment,
        shuffle=True,
        seed=config.seed,
        epochs=max(config.epochs - initial_epoch, 0),
        start_epoch=initial_epoch,
    )
    val_data = make_dataset(val_images, val_labels, config.batch_size)
    if initial_epoch >= config.epochs:
        return {}
    fit_context = contextlib.nullcontext()
    if config.distribute == "multi_worker":
        sample = next(iter(make_dataset(images[:2], labels[:2], 2)))
        fit_context = multi_worker_fit(model, strategy, sample)
    with fit_context:
        return model.fit(
            train_data,
            epochs=config.epochs,
            steps_per_epoch=steps,
            validation_data=val_data,
            validation_steps=steps_per_epoch(len(val_images), config.batch_size),
            shuffle=False,  # the pipeline shuffles, keyed on the epoch
            callbacks=callbacks,
            verbose=config.verbose,
        ).history
