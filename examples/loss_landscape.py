"""The paper's loss-landscape comparison: ResNet against In-ResNet.

For a batch of test images, the mean loss of `model(x + t * d)` for t in
[-T, T], with d each model's own attack direction (the sign of its input
gradient, as FGSM uses) and a shared random sign direction, plus the 2D
surface over both. The paper's claim: the damped models' loss grows more
slowly along the attack direction.

    make demo                               # trains the three demo models
    python examples/loss_landscape.py       # or pass your own .keras files
"""

import argparse

import keras

from keras_damped.analysis import analyze
from keras_damped.analysis import save_analysis
from keras_damped.data import load_arrays

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument(
    "models",
    nargs="*",
    default=[
        f"runs/demo/{name}/model.keras"
        for name in ("resnet20", "in_resnet20", "lambda_in_resnet20")
    ],
)
parser.add_argument("--dataset", default="fashion_mnist")
parser.add_argument("--test-limit", type=int, default=256)
parser.add_argument("--out", default="runs/landscape")
args = parser.parse_args()

models = {}
for path in args.models:
    model = keras.saving.load_model(path)
    models[model.name] = model
images, labels = load_arrays(args.dataset, "test", limit=args.test_limit)
result = analyze(
    models,
    images / 255.0,
    labels,
    T=16 / 255,
    points=33,
    points_2d=11,
    parts=("landscape",),
)
save_analysis(result, args.out, overwrite=True)
for name, values in result["landscape_1d"]["sign_gradient"]["models"].items():
    print(
        f"{name}: loss at t = 0: {values['loss'][16]:.3f}, "
        f"at t = 16/255 along the attack: {values['loss'][-1]:.3f}"
    )
print(f"plots in {args.out}/plots, TensorBoard: tensorboard --logdir {args.out}/tb")
