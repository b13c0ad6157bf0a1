"""Train a small In-ResNet on Fashion-MNIST on a laptop CPU in a few minutes.

Fashion-MNIST is read offline from Debian's dataset-fashion-mnist package
when it is installed (`make data`), otherwise Keras downloads it. The model
is In-ResNet-20 built for 28x28x1 inputs; every learned lambda is logged to
TensorBoard after each epoch.

    python examples/train_fashion_mnist.py
    tensorboard --logdir runs/fashion_mnist-in_resnet20/tb
"""

from keras_damped import damping_values
from keras_damped.training import TrainConfig
from keras_damped.training import train

config = TrainConfig(
    model="in_resnet20",
    dataset="fashion_mnist",
    run_dir="runs/fashion_mnist-in_resnet20",
    epochs=3,
    batch_size=128,
    lr=0.05,
    train_limit=10_000,  # the first 10,000 training images keep it quick
    test_limit=2_000,
    augment="paper",
)
result = train(config, overwrite=True)
print(
    f"test accuracy after {config.epochs} epochs: "
    f"{result.history['val_accuracy'][-1]:.4f}"
)
for block, lam in damping_values(result.model).items():
    print(f"  lambda[{block}] = {float(lam):.4f}")
