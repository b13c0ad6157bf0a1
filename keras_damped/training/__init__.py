"""Training: the paper's protocol, crash-safe runs, TensorBoard, tf.distribute."""

from keras_damped._extras import require

require("training", "train")

from keras_damped.training.callbacks import BackupUnlessDiverged
from keras_damped.training.callbacks import DampingMonitor
from keras_damped.training.callbacks import ProgressLogger
from keras_damped.training.config import PAPER_PROTOCOL
from keras_damped.training.config import TrainConfig
from keras_damped.training.loop import RunDirExistsError
from keras_damped.training.loop import TrainingDivergedError
from keras_damped.training.loop import TrainResult
from keras_damped.training.loop import resolve_jit_compile
from keras_damped.training.loop import resolve_precision
from keras_damped.training.loop import train
from keras_damped.training.loop import use_cpu_threads
from keras_damped.training.schedules import add_weight_decay
from keras_damped.training.schedules import learning_rate_schedule

__all__ = [
    "PAPER_PROTOCOL",
    "BackupUnlessDiverged",
    "DampingMonitor",
    "ProgressLogger",
    "RunDirExistsError",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "add_weight_decay",
    "learning_rate_schedule",
    "resolve_jit_compile",
    "resolve_precision",
    "train",
    "use_cpu_threads",
]
