"""Data pipelines: TFDS, offline Fashion-MNIST, in-memory arrays.

Every dataset is served as a `tf.data.Dataset` of `(float32 image in [0, 1],
int32 label)` batches. Shuffling and augmentation use stateless random ops
keyed on `(seed, epoch, position)`, so epoch `e` of a run is the same batch
sequence whether the run started at epoch 0 or resumed at epoch `e`: this is
what makes a killed-and-resumed training run end in the same state as an
uninterrupted one. TensorFlow is imported here, never by the layers.
"""

from keras_damped._extras import require

require("data", "train")

from keras_damped.data.corruptions import NOISES
from keras_damped.data.corruptions import corrupt
from keras_damped.data.pipeline import AUGMENTATIONS
from keras_damped.data.pipeline import DATASETS
from keras_damped.data.pipeline import DatasetUnavailableError
from keras_damped.data.pipeline import dataset_info
from keras_damped.data.pipeline import load
from keras_damped.data.pipeline import load_arrays
from keras_damped.data.pipeline import make_dataset
from keras_damped.data.pipeline import steps_per_epoch

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "NOISES",
    "DatasetUnavailableError",
    "corrupt",
    "dataset_info",
    "load",
    "load_arrays",
    "make_dataset",
    "steps_per_epoch",
]
