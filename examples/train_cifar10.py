"""Train ResNet-110, In-ResNet-110 and lambda-In-ResNet-110 on CIFAR-10.

The paper's full protocol (docs/paper.md section 4): SGD with momentum 0.9,
coupled weight decay 1e-4 on every weight (the damping weights included),
batch 128, learning rate 0.1 divided by 10 after epochs 80 and 120 of 160,
reflect-pad-2 random crops and horizontal flips. Each model writes its own
run folder under runs/ (config.json, tb/, checkpoints/, model.keras); a killed
run continues where it stopped when this script is started again.

CIFAR-10 comes through TensorFlow Datasets, which downloads it once
(about 170 MB) into ~/tensorflow_datasets or --data-dir. On a GPU the
training step is compiled with XLA; add --precision mixed_bfloat16 (or
mixed_float16) for mixed precision.

    python examples/train_cifar10.py --epochs 160
    tensorboard --logdir runs/
"""

import argparse

from keras_damped.training import TrainConfig
from keras_damped.training import train

MODELS = ("resnet110", "in_resnet110", "lambda_in_resnet110")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=160)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--models", nargs="+", default=MODELS)
    args = parser.parse_args()

    for name in args.models:
        config = TrainConfig(
            model=name,
            dataset="cifar10",
            run_dir=f"runs/cifar10-{name}",
            epochs=args.epochs,
            batch_size=128,
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            schedule="paper",
            augment="paper",
            precision=args.precision,
            data_dir=args.data_dir,
        )
        # resume=True: continue an interrupted run instead of refusing it.
        result = train(config, resume=True)
        print(
            f"{name}: best test accuracy "
            f"{max(result.history.get('val_accuracy', [float('nan')])):.4f}"
        )


if __name__ == "__main__":
    main()
