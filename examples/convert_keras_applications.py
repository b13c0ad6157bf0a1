"""Damp a network you already have: keras.applications' ResNet50V2.

`damp(model)` rebuilds any functional Keras model with each residual `Add`
replaced by a `DampedAdd` (the shortcut input is found from the graph), all
other layers and weights carried over; the original is left untouched. With
`variant="fixed", value=0.0` the copy computes exactly what the original
does; with `variant="in"` every merge gets a trainable lambda. This script
converts a ResNet50V2 (random weights: nothing is downloaded), checks the
lambda = 0 copy against the original, and fine-tunes the In-ResNet version
for a few steps on CIFAR-shaped Fashion-MNIST images.

    python examples/convert_keras_applications.py
"""

import keras
import numpy as np

from keras_damped import damp
from keras_damped import damping_values
from keras_damped.data import load_arrays

base = keras.applications.ResNet50V2(
    weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
)

same = damp(base, variant="fixed", value=0.0)
x = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
print("lambda = 0 copy, max |difference|:", float(np.abs(same(x) - base(x)).max()))

# The paper's rule: damp only the merges whose shortcut is the identity.
damped = damp(base, variant="in", identity_only=True)
print(
    f"{len(damping_values(damped))} damped merges of "
    f"{sum(type(layer) is keras.layers.Add for layer in base.layers)}"
)

images, labels = load_arrays("fashion_mnist", "train", limit=512)
images = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))  # 28 -> 32
images = np.repeat(images, 3, axis=-1).astype("float32") / 255.0
damped.compile(
    keras.optimizers.SGD(0.01, momentum=0.9),
    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
damped.fit(images, labels, batch_size=64, epochs=1, verbose=2)
for block, lam in list(damping_values(damped).items())[:3]:
    print(f"lambda[{block}] = {float(lam):.4f}")
damped.save("runs/damped_resnet50v2.keras")
