import os
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_damped.data import DatasetUnavailableError
from keras_damped.data import load
from keras_damped.data import load_arrays
from keras_damped.data import make_dataset
from keras_damped.data import steps_per_epoch
from keras_damped.data.pipeline import FASHION_MNIST_DEBIAN


def batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_fashion_mnist_offline_from_the_debian_package(tmp_path, monkeypatch):
    assert os.path.isdir(FASHION_MNIST_DEBIAN), "make data installs it"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    images, labels = load_arrays("fashion_mnist", "test")
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    # The Debian files were placed where Keras' loader looks.
    assert (
        tmp_path / "datasets" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    ).exists()
    train, _ = load_arrays("fashion_mnist", "train", limit=100)
    assert train.shape == (100, 28, 28, 1) and train.std() > 10
    # The files are decompressed once per process; each call gets its own
    # writable copy, so what a caller changes never reaches the next one.
    first = train.copy()
    train[:] = 0
    again, _ = load_arrays("fashion_mnist", "train", limit=100)
    np.testing.assert_array_equal(again, first)


def test_pipeline_types_shapes_and_range(rng):
    images = rng.integers(0, 256, (70, 12, 10, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, 70)
    got = batches(make_dataset(images, labels, 32, augment="paper", shuffle=True))
    assert [x.shape for x, _ in got] == [
        (32, 12, 10, 3),
        (32, 12, 10, 3),
        (6, 12, 10, 3),
    ]
    assert all(x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1 for x, _ in got)
    assert all(y.dtype == np.int32 for _, y in got)
    assert steps_per_epoch(70, 32) == 3 and steps_per_epoch(70, 32, True) == 2
    plain = batches(make_dataset(images, labels, 70))[0]
    np.testing.assert_array_equal(plain[0], images / np.float32(255))
    np.testing.assert_array_equal(plain[1], labels)


def test_epochs_are_keyed_on_seed_and_epoch_index(rng):
    images = rng.integers(0, 256, (40, 6, 6, 1), dtype=np.uint8)
    labels = np.arange(40)
    kwargs = {"batch_size": 8, "augment": "paper", "shuffle": True, "seed": 7}
    three = batches(make_dataset(images, labels, epochs=3, **kwargs))
    resumed = batches(make_dataset(images, labels, epochs=2, start_epoch=1, **kwargs))
    assert len(three) == 15 and len(resumed) == 10
    for (xa, ya), (xb, yb) in zip(three[5:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    order = [np.concatenate([y for _, y in three[i : i + 5]]) for i in (0, 5, 10)]
    assert all(sorted(o) == list(range(40)) for o in order)  # a permutation
    assert not np.array_equal(order[0], order[1])  # reshuffled every epoch
    other_seed = batches(
        make_dataset(images, labels, epochs=1, **{**kwargs, "seed": 8})
    )
    assert not np.array_equal(np.concatenate([y for _, y in other_seed]), order[0])


@pytest.mark.parametrize(
    "kind,pad,mode", [("paper", 2, "reflect"), ("standard", 4, "constant")]
)
def test_augmentation_is_a_padded_crop_maybe_flipped(kind, pad, mode, rng):
    image = rng.integers(1, 256, (1, 9, 9, 2), dtype=np.uint8)
    padded = np.pad(image[0], ((pad, pad), (pad, pad), (0, 0)), mode=mode)
    candidates = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy : dy + 9, dx : dx + 9]
            candidates += [crop, crop[:, ::-1]]
    seen_flip = seen_shift = False
    for epoch in range(12):
        ((x, _),) = batches(
            make_dataset(image, [0], 1, augment=kind, epochs=1, start_epoch=epoch)
        )
        out = np.round(x[0] * 255).astype(np.uint8)
        matches = [i for i, c in enumerate(candidates) if np.array_equal(c, out)]
        assert matches, "not a crop of the padded image"
        seen_flip |= any(i % 2 for i in matches)
        seen_shift |= not np.array_equal(out, image[0]) and not np.array_equal(
            out, image[0][:, ::-1]
        )
    assert seen_flip and seen_shift


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_tfds_cifar_path_with_mock_data(name, classes, tmp_path):
    with tfds.testing.mock_data(num_examples=24, data_dir=str(tmp_path)):
        images, labels = load_arrays(name, "train")
        data = load(name, "train", batch_size=10, augment="paper", limit=20)
        got = batches(data)
        test_images, _ = load_arrays(name, "test", limit=5)
    assert images.shape == (24, 32, 32, 3) and images.dtype == np.uint8
    assert labels.min() >= 0 and labels.max() < classes
    assert [x.shape for x, _ in got] == [(10, 32, 32, 3), (10, 32, 32, 3)]
    assert all(0 <= x.min() and x.max() <= 1 for x, _ in got)
    assert test_images.shape == (5, 32, 32, 3)


def test_unavailable_dataset_fails_at_once_with_advice(tmp_path):
    start = time.monotonic()
    with pytest.raises(
        DatasetUnavailableError, match=r"not prepared under .*--data-dir"
    ):
        load_arrays("cifar10", "train", data_dir=str(tmp_path), download=False)
    with pytest.raises(DatasetUnavailableError, match="cannot be downloaded here"):
        load_arrays("cifar100", "test", data_dir=str(tmp_path))
    assert time.monotonic() - start < 60
    assert not any(p.is_file() for p in tmp_path.rglob("*.tfrecord*"))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: load("mnist"), "name='mnist'"),
        (lambda: load("fashion_mnist", "validation"), "split='validation'"),
        (lambda: load("cifar10_corrupted/gaussian_noise_1", "train"), "split='train'"),
        (lambda: load("fashion_mnist", augment="autoaugment"), "augment='autoaugment'"),
        (lambda: load("fashion_mnist", batch_size=0), "batch_size=0"),
        (lambda: load("fashion_mnist", limit=0), "limit=0"),
        (lambda: make_dataset(np.zeros((3, 4, 4)), [1, 2], 2), "one label each"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
