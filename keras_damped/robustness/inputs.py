"""The images an evaluation runs on: the test set, its noise and sweeps."""

import dataclasses
import logging

import numpy as np

from keras_damped.data.corruptions import NOISES
from keras_damped.data.corruptions import corrupt

logger = logging.getLogger("keras_damped")


@dataclasses.dataclass
class TestSet:
    """`images` (float32 in [0, 1], NHWC) and int32 `labels`; the first
    `attacked` are attacked. `noise_sets`: `{(noise, severity): (images,
    labels or None)}`; `level_sets`: `{(noise, c): images}`; `source`: where
    the noise came from; `name`: the dataset's name ("arrays" for arrays)."""

    images: np.ndarray
    labels: np.ndarray
    attacked: int
    noise_sets: dict
    level_sets: dict
    source: str
    name: str

    @property
    def input_shape(self):
        return (None, *self.images.shape[1:])


def dataset_input_shape(dataset):
    """`(None, h, w, c)` of a dataset name or an `(images, labels)` pair."""
    from keras_damped.data.pipeline import dataset_info

    if isinstance(dataset, str):
        return (None, *dataset_info(dataset).input_shape)
    shape = (None, *np.asarray(dataset[0]).shape[1:])
    return (*shape, 1) if len(shape) == 3 else shape


def load_test_set(config):
    """The `TestSet` of an `EvalConfig` (its dataset a name or arrays)."""
    from keras_damped.data.pipeline import load_arrays

    dataset = config.dataset
    if isinstance(dataset, str):
        images, labels = load_arrays(
            dataset, "test", config.data_dir, config.test_limit
        )
    else:
        images = np.asarray(dataset[0])[: config.test_limit]
        labels = np.asarray(dataset[1])[: config.test_limit]
    if images.ndim == 3:
        images = images[..., None]
    images = images.astype("float32") / (255.0 if images.dtype == np.uint8 else 1.0)
    name = dataset if isinstance(dataset, str) else "arrays"
    attacked = len(images) if config.attack_limit is None else config.attack_limit
    noise_sets, source = _noise_sets(name, images, config)
    return TestSet(
        images=images,
        labels=labels.astype("int32"),
        attacked=min(attacked, len(images)),
        noise_sets=noise_sets,
        level_sets=_level_sets(images, config),
        source=source,
        name=name,
    )


def _noise_sets(dataset, images, config):
    """{(noise, severity): (images in [0, 1], labels or None)} and the source."""
    source = config.noise_source
    if source == "tfds" or (source == "auto" and dataset == "cifar10"):
        from keras_damped.data.pipeline import DatasetUnavailableError

        try:
            return _cifar10_c(config), "CIFAR-10-C files (TFDS cifar10_corrupted)"
        except DatasetUnavailableError as error:
            if source == "tfds":
                raise
            logger.info(
                "CIFAR-10-C files unavailable, generating the noise: %s",
                str(error).split(".")[0],
            )
    sets = {}
    for i, noise in enumerate(NOISES):
        if noise not in config.noises:
            continue
        for severity in config.severities:
            seed = (config.seed, 10 * i + severity)
            sets[(noise, severity)] = (
                corrupt(images, noise, severity, seed).numpy(),
                None,
            )
    return sets, "generated with the CIFAR-10-C parameters (keras_damped.data.corrupt)"


def _cifar10_c(config):
    from keras_damped.data.pipeline import load_arrays

    sets = {}
    for noise in config.noises:
        for severity in config.severities:
            x, y = load_arrays(
                f"cifar10_corrupted/{noise}_noise_{severity}",
                "test",
                config.data_dir,
                config.test_limit,
                download=config.noise_source == "tfds",
            )
            sets[(noise, severity)] = (x.astype("float32") / 255.0, y)
    return sets


def _level_sets(images, config):
    """{(noise, c): images} of the explicit noise parameters (seeded)."""
    sets = {}
    for i, noise in enumerate(NOISES):
        for j, c in enumerate(config.noise_levels.get(noise, ())):
            seed = (config.seed, 1000 + 100 * i + j)
            sets[(noise, c)] = corrupt(images, noise, seed=seed, level=c).numpy()
    return sets
