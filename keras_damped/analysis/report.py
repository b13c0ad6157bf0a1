"""`analyze()`: landscapes and stability of models as JSON, PNG, TensorBoard."""

import io
import json
import os

import numpy as np

from keras_damped._staging import staged_folder
from keras_damped.analysis.landscape import landscape_1d
from keras_damped.analysis.landscape import landscape_2d
from keras_damped.analysis.stability import block_spectral_norms
from keras_damped.analysis.stability import damping_by_depth
from keras_damped.analysis.stability import perturbation_growth


def analyze(
    models,
    x,
    y,
    T=16 / 255,
    points=33,
    points_2d=11,
    clip=True,
    epsilon=1e-2,
    iterations=20,
    seed=0,
    parts=("landscape", "stability"),
):
    """Loss landscapes and stability measurements of models on one batch.

    Args:
        models: {name: model}.
        x, y: a batch of pixels in [0, 1] and labels.
        T, points, points_2d, clip: the landscape grids (see `landscape_1d`).
        epsilon: L2 norm of the perturbations of `perturbation_growth`.
        iterations: power iterations of the spectral norms.
        seed: seed of the random directions.
        parts: `"landscape"` (1D and 2D; `"landscape_1d"`: 1D only) and/or
            `"stability"`.

    Returns:
        A JSON-ready dict; `save_analysis(result, out_dir)` writes it.
    """
    result = {
        "settings": {
            "examples": int(len(x)),
            "T": T,
            "points": points,
            "points_2d": points_2d,
            "clip": clip,
            "epsilon": epsilon,
            "iterations": iterations,
            "seed": seed,
            "models": list(models),
        }
    }
    probes = {}  # one traced probe per model for every landscape below
    if "landscape" in parts or "landscape_1d" in parts:
        result["landscape_1d"] = {
            kind: landscape_1d(models, x, y, kind, T, points, clip, seed, probes)
            for kind in ("sign_gradient", "random")
        }
    if "landscape" in parts:
        result["landscape_2d"] = {
            name: landscape_2d(model, x, y, T, points_2d, clip, seed, probes)
            for name, model in models.items()
        }
    if "stability" in parts:
        result["perturbation_growth"] = {
            name: {
                kind: perturbation_growth(model, x, y, kind, epsilon, seed=seed)
                for kind in ("random", "adversarial")
            }
            for name, model in models.items()
        }
        result["spectral_norms"] = {
            name: block_spectral_norms(model, x, iterations=iterations, seed=seed)
            for name, model in models.items()
        }
        result["damping"] = {name: damping_by_depth(m) for name, m in models.items()}
    return result


def _figure(plt, count, width=4.5):
    fig, axes = plt.subplots(1, count, figsize=(width * count, 3.3), squeeze=False)
    return fig, axes[0]


def plots(result):
    """{file name: PNG bytes} of every figure the result has data for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    clip = "clipped to [0, 1]" if result["settings"]["clip"] else "not clipped"
    if "landscape_1d" in result:
        figures["landscape_1d.png"] = _landscape_1d_figure(plt, result, clip)
    if "landscape_2d" in result:
        figures["landscape_2d.png"] = _landscape_2d_figure(plt, result, clip)
    if "perturbation_growth" in result:
        figures["perturbation_growth.png"] = _growth_figure(plt, result)
    if "spectral_norms" in result:
        figures["spectral_norms.png"] = _by_block_figure(
            plt,
            {n: d["sigma"] for n, d in result["spectral_norms"].items()},
            "block Jacobian spectral norm (mean over inputs)",
            "block",
            "largest singular value",
            ".",
        )
    if "damping" in result and any(d["lambda"] for d in result["damping"].values()):
        figures["damping_by_depth.png"] = _by_block_figure(
            plt,
            {n: d["lambda"] for n, d in result["damping"].items() if d["lambda"]},
            "learned lambda by depth (damped blocks)",
            "damped block",
            "lambda",
            "o",
        )
    out = {}
    for file_name, fig in figures.items():
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        out[file_name] = buffer.getvalue()
    return out


def _landscape_1d_figure(plt, result, clip):
    fig, axes = _figure(plt, 2)
    for ax, (kind, data) in zip(axes, result["landscape_1d"].items()):
        t = np.array(data["t"]) * 255
        for name, values in data["models"].items():
            ax.plot(t, values["loss"], label=name)
        ax.set_title(
            f"loss along the {'attack' if kind != 'random' else 'random'}"
            f" direction ({clip})",
            fontsize=9,
        )
        ax.set_xlabel("t (x 1/255)")
        ax.set_ylabel("mean cross-entropy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def _landscape_2d_figure(plt, result, clip):
    models = result["landscape_2d"]
    fig, axes = _figure(plt, len(models), 3.8)
    for ax, (name, data) in zip(axes, models.items()):
        t = np.array(data["t"]) * 255
        contour = ax.contourf(t, t, np.array(data["loss"]).T, levels=15)
        fig.colorbar(contour, ax=ax)
        ax.set_title(f"{name} ({clip})", fontsize=9)
        ax.set_xlabel("attack direction (x 1/255)")
        ax.set_ylabel("random direction (x 1/255)")
    return fig


def _growth_figure(plt, result):
    fig, axes = _figure(plt, 2)
    for ax, kind in zip(axes, ("random", "adversarial")):
        for name, data in result["perturbation_growth"].items():
            ax.plot(
                range(1, len(data[kind]["ratio"]) + 1),
                data[kind]["ratio"],
                marker=".",
                label=name,
            )
        ax.set_title(f"{kind} perturbation growth", fontsize=9)
        ax.set_xlabel("block")
        ax.set_ylabel("||h(x+d) - h(x)|| / ||d||")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def _by_block_figure(plt, values, title, xlabel, ylabel, marker):
    """One line per model of a value per block."""
    fig, axes = _figure(plt, 1, 6)
    for name, series in values.items():
        axes[0].plot(range(1, len(series) + 1), series, marker=marker, label=name)
    axes[0].set_title(title, fontsize=9)
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    return fig


def analyze_saved(paths, dataset, test_limit=128, data_dir=None, **settings):
    """`analyze` of saved `.keras` models on the first `test_limit` test
    images of `dataset`; `settings` are `analyze`'s (T in pixel units)."""
    from keras_damped.data import load_arrays
    from keras_damped.models.loading import named_models
    from keras_damped.validators import positive_int

    positive_int("test_limit", test_limit)
    models = named_models(paths)
    images, labels = load_arrays(dataset, "test", data_dir, test_limit)
    for name, model in models.items():
        if tuple(model.input_shape[1:]) != images.shape[1:]:
            raise ValueError(
                f"Model {name!r} takes inputs {model.input_shape}, but the "
                f"{dataset} images are {(None, *images.shape[1:])}."
            )
    return analyze(models, images / 255.0, labels, **settings)


def save_analysis(result, out_dir, overwrite=False):
    """Writes analysis.json, plots/*.png and tb/ (the figures as images)."""
    import tensorflow as tf

    with staged_folder(out_dir, overwrite) as staging:
        os.makedirs(os.path.join(staging, "plots"))
        with open(os.path.join(staging, "analysis.json"), "w") as f:
            json.dump(result, f, indent=2)
        pngs = plots(result)
        writer = tf.summary.create_file_writer(os.path.join(staging, "tb"))
        with writer.as_default():
            for file_name, data in pngs.items():
                with open(os.path.join(staging, "plots", file_name), "wb") as f:
                    f.write(data)
                image = tf.image.decode_png(data, channels=4)[None]
                tf.summary.image(f"analysis/{file_name[:-4]}", image, step=0)
        writer.close()
    return os.path.abspath(out_dir)
