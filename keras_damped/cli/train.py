"""`keras-damped train`: one training run into a run folder."""

from keras_damped.cli._configs import add_training_options
from keras_damped.cli._configs import training_settings
from keras_damped.cli._options import HELP_FORMAT
from keras_damped.cli._options import add_setting
from keras_damped.cli._options import renamed


def add_parser(sub):
    from keras_damped.training.config import DISTRIBUTE_CHOICES
    from keras_damped.training.config import TrainConfig

    parser = sub.add_parser(
        "train",
        formatter_class=HELP_FORMAT,
        help="train a model with the paper's protocol and write a run folder",
        description="Train with the paper's protocol (SGD momentum 0.9, weight "
        "decay 1e-4, lr 0.1 divided by 10 at 50%% and 75%% of the steps). "
        "Writes OUT/config.json, tb/, checkpoints/ and model.keras.",
    )
    add_setting(parser, TrainConfig, "model")
    add_setting(parser, TrainConfig, "dataset")
    add_setting(parser, TrainConfig, "run_dir", "--out", default=None, required=True)
    add_setting(parser, TrainConfig, "epochs", type=int)
    add_training_options(parser, TrainConfig())
    renamed(parser, "--limit", "--train-limit")
    add_setting(parser, TrainConfig, "seed", type=int)
    add_setting(parser, TrainConfig, "test_limit", type=int)
    add_setting(parser, TrainConfig, "validation_split", type=float)
    add_setting(parser, TrainConfig, "distribute", choices=DISTRIBUTE_CHOICES)
    add_setting(parser, TrainConfig, "data_dir")
    add_setting(parser, TrainConfig, "verbose", type=int, choices=(0, 1, 2))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in OUT")
    mode.add_argument("--overwrite", action="store_true", help="replace the run in OUT")
    parser.set_defaults(run=run)


def config(args):
    """The run's `TrainConfig` (validated by `train`)."""
    from keras_damped.training import TrainConfig

    return TrainConfig(
        model=args.model,
        dataset=args.dataset,
        run_dir=args.run_dir,
        epochs=args.epochs,
        seed=args.seed,
        test_limit=args.test_limit,
        validation_split=args.validation_split,
        distribute=args.distribute,
        verbose=args.verbose,
        **training_settings(args),
    )


def run(args):
    from keras_damped.training import train

    result = train(config(args), resume=args.resume, overwrite=args.overwrite)
    accuracy = result.history.get("val_accuracy", [float("nan")])[-1]
    print(
        f"Finished: {result.run_dir}/model.keras (last validation accuracy "
        f"{accuracy:.4f}). TensorBoard: tensorboard --logdir {result.run_dir}/tb"
    )
