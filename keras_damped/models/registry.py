"""Named presets of the paper's models: `create_model` and `list_models`."""

import fnmatch

import keras

from keras_damped.models.resnet import DampedResNet
from keras_damped.models.resnext import DampedResNeXt

_VARIANT_PREFIXES = {"": None, "in_": "in", "lambda_in_": "lambda_in"}
_PRESETS = {}
# Initial range of the raw damping weight k of the 164-layer bottleneck
# models, from the reference's notes (docs/paper.md section 2). Every other
# preset uses DampedAdd's default: U(0.75, 0.80) for In, U(0.20, 0.25) for
# lambda-In.
K_RANGES_164 = {"in": (0.8, 0.9), "lambda_in": (0.1, 0.2)}


def _damping_options(depth, damping):
    if depth != 164 or damping not in K_RANGES_164:
        return {}
    low, high = K_RANGES_164[damping]
    # A config, not an instance: every block deserializes its own initializer.
    initializer = {
        "class_name": "RandomUniform",
        "config": {"minval": low, "maxval": high},
    }
    return {"damping_options": {"initializer": initializer}}


def _register(name, builder, description, **kwargs):
    _PRESETS[name] = (builder, description, kwargs)


for _depth in (20, 32, 44, 56, 110, 164):
    for _prefix, _damping in _VARIANT_PREFIXES.items():
        _register(
            f"{_prefix}resnet{_depth}",
            DampedResNet,
            f"{_prefix or 'plain '}ResNet-{_depth} (pre-activation, CIFAR)",
            depth=_depth,
            damping=_damping,
            **_damping_options(_depth, _damping),
        )
    _register(
        f"cnn{_depth}",
        DampedResNet,
        f"ResNet-{_depth} with lambda = 1 (non-residual damped blocks)",
        depth=_depth,
        damping="cnn",
    )
for _cardinality in (8, 16):
    for _prefix, _damping in _VARIANT_PREFIXES.items():
        _register(
            f"{_prefix}resnext29_{_cardinality}x64d",
            DampedResNeXt,
            f"{_prefix or 'plain '}ResNeXt-29 {_cardinality}x64d (CIFAR)",
            depth=29,
            cardinality=_cardinality,
            bottleneck_width=64,
            damping=_damping,
        )


def list_models(pattern="*"):
    """Sorted preset names matching a shell-style `pattern` (e.g. `"in_*"`)."""
    return sorted(n for n in _PRESETS if fnmatch.fnmatchcase(n, pattern))


def preset_config(name):
    """(builder, description, keyword arguments) of a preset."""
    if name not in _PRESETS:
        raise ValueError(
            f"Unknown model name. Expected one of {list_models()}. "
            f"Received: name={name!r}"
        )
    builder, description, kwargs = _PRESETS[name]
    return builder, description, dict(kwargs)


def create_model(name, **overrides):
    """Builds a preset, with any builder argument overridden.

    Example:
    ```python
    model = create_model("in_resnet20", num_classes=100)
    ```
    """
    builder, _, kwargs = preset_config(name)
    kwargs["name"] = name
    kwargs.update(overrides)
    return builder(**kwargs)


def models_table(patterns=("*",)):
    """The registered models matching `patterns` as a Markdown table."""

    from keras_damped.models.inspect import damping_values

    names = sorted({n for p in patterns for n in list_models(p)})
    if not names:
        raise ValueError(
            f"No model matches {list(patterns)}. Known models: "
            f"{', '.join(list_models())}"
        )
    header = [
        "model",
        "family",
        "depth",
        "block",
        "parameters",
        "damped blocks",
        "initial lambda",
    ]
    rows = []
    for name in names:
        # Only shapes and settings are read, so the weights are never
        # initialised (Keras defers a variable created in a stateless scope
        # until something initialises it, and keeps it registered until its
        # session is cleared): the whole table about 3x faster, the ResNeXt
        # presets' 100 M random draws having been most of it.
        with keras.StatelessScope(initialize_variables=False):
            model = create_model(name)
        _, description, kwargs = preset_config(name)
        first = model.get_layer("stage1_block1")
        lam = _initial_lambda(model)
        rows.append(
            [
                name,
                "ResNeXt" if "resnext" in name else "ResNet",
                str(kwargs["depth"]),
                type(first).__name__.replace("Block", "").lower()
                + (
                    f" C={first.cardinality}"
                    if getattr(first, "cardinality", 1) > 1
                    else ""
                ),
                f"{model.count_params() - _non_trainable(model):,}",
                str(len(damping_values(model))),
                lam,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows
    ]
    return "\n".join(lines)


def _initial_lambda(model):
    """The damping a fresh model starts from, as its initialiser draws it:
    "0 (ResNet)", "1.00 (fixed)" or the range lambda is drawn from, from the
    first damped merge's initialiser of k (the same for every block)."""
    from keras import initializers

    from keras_damped.layers.damped_add import DampedAdd

    merges = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, DampedAdd)
        and not (layer.variant == "fixed" and layer.value == 0)
    ]
    if not merges:  # every merge an exact ResNet add
        return "0 (ResNet)"
    merge = merges[0]
    if merge.variant == "fixed":
        return f"{merge.value:.2f} (fixed)"
    init = merge.initializer
    if not isinstance(init, initializers.RandomUniform):
        return type(init).__name__
    low, high = init.minval, init.maxval
    if merge.variant == "in":  # lambda = relu(1 - k)
        low, high = 1 - high, 1 - low
    return f"U({low:.2f}, {high:.2f})"


def _non_trainable(model):
    import numpy as np

    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
