"""Loading datasets into memory and serving them as seeded tf.data pipelines."""

import dataclasses
import functools
import math
import os
import shutil

import numpy as np
import tensorflow as tf

from keras_damped.validators import optional_positive_int
from keras_damped.validators import positive_int

AUGMENTATIONS = (None, "paper", "standard")
SPLITS = ("train", "test")
FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple
    num_classes: int
    normalization: str
    source: str


DATASETS = {
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10, "cifar10", "tfds"),
    "cifar100": DatasetInfo("cifar100", (32, 32, 3), 100, "cifar100", "tfds"),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", (28, 28, 1), 10, "fashion_mnist", "keras"
    ),
}


def dataset_info(name):
    """Shape, classes and normalisation of a named dataset.

    `cifar10_corrupted/<noise>_<severity>` is CIFAR-10's test set corrupted.
    """
    if isinstance(name, str) and name.startswith("cifar10_corrupted/"):
        return dataclasses.replace(DATASETS["cifar10"], name=name)
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset. Expected one of {sorted(DATASETS)} or "
            f"'cifar10_corrupted/<noise>_<severity>'. Received: name={name!r}"
        )
    return DATASETS[name]


def _check_split(name, split):
    allowed = ("test",) if name.startswith("cifar10_corrupted/") else SPLITS
    if split not in allowed:
        raise ValueError(
            f"Unknown split for {name}. Expected one of {allowed}. "
            f"Received: split={split!r}"
        )


def _keras_home():
    """Keras' own rule for its home folder ($KERAS_HOME, else ~/.keras, else
    /tmp/.keras), which keras.datasets.fashion_mnist reads from."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return home


def _install_debian_fashion_mnist(home):
    """Places Debian's dataset-fashion-mnist files where Keras' loader looks."""
    target = os.path.join(home, "datasets", "fashion-mnist")
    for fname in _FASHION_FILES:
        source = os.path.join(FASHION_MNIST_DEBIAN, fname)
        dest = os.path.join(target, fname)
        if os.path.exists(source) and not os.path.exists(dest):
            os.makedirs(target, exist_ok=True)
            shutil.copyfile(source, dest)


@functools.lru_cache(maxsize=2)
def _fashion_mnist_splits(home):
    """Both splits, decompressed once per process (and Keras home folder):
    Keras' loader reads all four files on every call (about 0.25 s), and a
    study's run or a test process asks for them several times. The arrays
    are read-only; `load_arrays` hands out copies."""
    import keras

    _install_debian_fashion_mnist(home)
    try:
        splits = keras.datasets.fashion_mnist.load_data()
    except Exception as error:
        raise DatasetUnavailableError(
            "fashion_mnist is not available: Debian's dataset-fashion-mnist "
            f"package is not installed ({FASHION_MNIST_DEBIAN} is missing) and "
            f"the download failed ({type(error).__name__}: {error}). Install it "
            "with `apt-get install dataset-fashion-mnist` (or `make data`)."
        ) from None
    for array in (*splits[0], *splits[1]):
        array.flags.writeable = False
    return splits


def _load_fashion_mnist(split):
    train, test = _fashion_mnist_splits(_keras_home())
    images, labels = train if split == "train" else test
    return images[..., None], labels


# Where TFDS downloads each family from, to tell "offline" at once instead of
# waiting through the download's retries.
_TFDS_HOSTS = {
    "cifar10": "www.cs.toronto.edu",
    "cifar100": "www.cs.toronto.edu",
    "cifar10_corrupted": "zenodo.org",
}


def _reachable(host, timeout=3.0):
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _load_tfds(name, split, data_dir, download):
    import tensorflow_datasets as tfds

    def fetch(allow_download):
        dataset = tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            as_supervised=True,
            download=allow_download,
        )
        chunks = list(tfds.as_numpy(dataset.batch(10_000)))
        return (
            np.concatenate([images for images, _ in chunks]),
            np.concatenate([labels for _, labels in chunks]),
        )

    try:
        return fetch(False)
    except Exception as error:
        problem = error
    host = _TFDS_HOSTS.get(name.split("/")[0])
    if download and (host is None or _reachable(host)):
        try:
            return fetch(True)
        except Exception as error:
            problem = error
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    reason = (
        f"no network ({host} is unreachable)" if download and host else "download=False"
    )
    raise DatasetUnavailableError(
        f"{name} ({split}) is not available: it is not prepared under {where} "
        f"and cannot be downloaded here: {reason} "
        f"[{type(problem).__name__}: {str(problem).splitlines()[0][:200]}]. "
        "On a machine with network access, prepare it with "
        f'`python -c "import tensorflow_datasets as tfds; tfds.builder('
        f"'{name}', data_dir='DIR').download_and_prepare()\"`, copy DIR "
        "here and pass data_dir='DIR' (`--data-dir DIR` on the command line)."
    ) from None


def load_arrays(name, split="train", data_dir=None, limit=None, download=True):
    """Loads a whole split into memory: (uint8 NHWC images, int32 labels)."""
    info = dataset_info(name)
    _check_split(name, split)
    _check_limit(limit)
    if info.source == "keras":
        images, labels = _load_fashion_mnist(split)
    else:
        images, labels = _load_tfds(name, split, data_dir, download)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if info.source == "keras":  # views of the read-only cache: the caller's copy
        images, labels = images.copy(), labels.copy()
    return np.asarray(images), np.asarray(labels, dtype="int32")


def _check_limit(limit):
    optional_positive_int("limit", limit)


def _check_batch_size(batch_size):
    positive_int("batch_size", batch_size)


def steps_per_epoch(num_examples, batch_size, drop_remainder=False):
    """Batches in one pass over `num_examples`."""
    if drop_remainder:
        return num_examples // batch_size
    return math.ceil(num_examples / batch_size)


def _augment(image, seed, kind):
    """Pad, random crop back to size, random horizontal flip (stateless)."""
    height, width, channels = image.shape
    pad = 2 if kind == "paper" else 4
    mode = "REFLECT" if kind == "paper" else "CONSTANT"
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode=mode)
    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=2)
    )
    image = tf.image.stateless_random_crop(
        padded, (height, width, channels), seed=crop_seed
    )
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def make_dataset(
    images,
    labels,
    batch_size=128,
    augment=None,
    shuffle=False,
    seed=0,
    epochs=1,
    start_epoch=0,
    drop_remainder=False,
):
    """Serves arrays as a batched, prefetched `tf.data.Dataset`.

    Args:
        images: NHWC (or NHW) uint8 pixels, or floats already in [0, 1].
        labels: integer class labels.
        batch_size: examples per batch.
        augment: None, `"paper"` (reflect-pad 2, random crop, random flip) or
            `"standard"` (zero-pad 4, random crop, random flip).
        shuffle: reshuffle the examples in every epoch.
        seed: the seed of shuffling and augmentation.
        epochs: passes served one after another; epoch `e` is always the
            same sequence of batches for a given seed.
        start_epoch: index of the first pass (for resuming a run).
        drop_remainder: drop the last partial batch of each pass.

    Returns:
        A dataset of `(float32 images in [0, 1], int32 labels)` batches:
        `epochs * steps_per_epoch(len(images), batch_size)` of them.
    """
    _check_batch_size(batch_size)
    if augment not in AUGMENTATIONS:
        raise ValueError(
            f"Unknown augmentation. Expected one of {AUGMENTATIONS}. "
            f"Received: augment={augment!r}"
        )
    images = np.asarray(images)
    labels = np.asarray(labels, dtype="int32")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(
            "images must be a non-empty (N, H, W[, C]) array with one label "
            f"each. Received: images shape={images.shape}, labels "
            f"shape={labels.shape}"
        )
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    num = len(images)
    all_images = tf.constant(images)
    all_labels = tf.constant(labels)
    seed = int(seed)

    def one_epoch(epoch):
        order = tf.range(num, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([tf.constant(seed, tf.int64), epoch])
            )

        def example(position, index):
            image = tf.gather(all_images, index)
            if augment:
                key = tf.stack([tf.constant(seed, tf.int64), epoch * num + position])
                image = _augment(image, key, augment)
            return image, tf.gather(all_labels, index)

        data = tf.data.Dataset.from_tensor_slices(order).enumerate()
        data = data.map(example, num_parallel_calls=tf.data.AUTOTUNE)
        return data.batch(batch_size, drop_remainder=drop_remainder)

    dataset = tf.data.Dataset.range(start_epoch, start_epoch + epochs).flat_map(
        one_epoch
    )
    dataset = dataset.map(
        lambda x, y: (tf.cast(x, tf.float32) / scale, y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def load(
    name,
    split="train",
    batch_size=128,
    augment=None,
    limit=None,
    seed=0,
    shuffle=None,
    data_dir=None,
    download=True,
    epochs=1,
    start_epoch=0,
    drop_remainder=False,
):
    """Loads a dataset by name (or a `(images, labels)` pair) as a tf.data pipeline.

    Args:
        name: `"cifar10"`, `"cifar100"` (TFDS), `"fashion_mnist"` (Keras'
            loader, offline from Debian's package when installed),
            `"cifar10_corrupted/<noise>_<severity>"` (TFDS, test split), or a
            tuple `(images, labels)` of arrays.
        split: `"train"` or `"test"`.
        batch_size: examples per batch.
        augment: None, `"paper"` or `"standard"` (see `make_dataset`).
        limit: use only the first `limit` examples of the split.
        seed: seed of shuffling and augmentation.
        shuffle: defaults to True for the training split.
        data_dir: where TFDS keeps its data.
        download: let TFDS download a missing dataset.
        epochs, start_epoch, drop_remainder: see `make_dataset`.

    Returns:
        A `tf.data.Dataset` of `(float32 image batch in [0, 1], int32 labels)`.

    Example:
    ```python
    train = load("fashion_mnist", "train", batch_size=128, augment="paper")
    ```
    """
    _check_batch_size(batch_size)
    if augment not in AUGMENTATIONS:
        raise ValueError(
            f"Unknown augmentation. Expected one of {AUGMENTATIONS}. "
            f"Received: augment={augment!r}"
        )
    if isinstance(name, (tuple, list)):
        _check_limit(limit)
        images, labels = name
        images, labels = images[:limit], labels[:limit]
    else:
        images, labels = load_arrays(name, split, data_dir, limit, download)
    return make_dataset(
        images,
        labels,
        batch_size,
        augment,
        shuffle=split == "train" if shuffle is None else shuffle,
        seed=seed,
        epochs=epochs,
        start_epoch=start_epoch,
        drop_remainder=drop_remainder,
    )
