"""Weights of the authors' PyTorch models (minicheshire/InResNet) in ours.

The reference's `ResNet` and `InResNet` modules name their parameters

    conv1.weight                          the stem convolution
    bn1.*                                 a stem batch norm that forward() skips
    blocks.<i>.bn<j>.{weight, bias, running_mean, running_var}
    blocks.<i>.conv<j>.weight             block i (0-based over all stages)
    downsample1.downsample.{0, 2}.*       the projection of bottleneck block 0
    downsample21.downsample.{0, 2}.*      the projection of stage 2's first block
    downsample31.downsample.{0, 2}.*      the projection of stage 3's first block
    downsample22.*, downsample32.*        unused copies (plain ResNet only)
    ks.<i>                                one k per block (InResNet only)
    bn.*, fc.weight, fc.bias              the head

Convolution weights are OIHW (ours HWIO), `fc.weight` is (out, in) (ours
(in, out)), and every batch norm also stores `num_batches_tracked`. The
`ks` of blocks that the reference does not damp (the first of each stage),
the stem `bn1`, the unused projections and `num_batches_tracked` are
accepted and ignored.
"""

import keras
import numpy as np

from keras_damped.layers.blocks import BasicBlock
from keras_damped.layers.blocks import BottleneckBlock

_BN_PARTS = (
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)


def _blocks(model):
    """The model's blocks in the reference's order, with (stage, index)."""
    blocks = []
    for stage in (1, 2, 3):
        index = 1
        while True:
            try:
                layer = model.get_layer(f"stage{stage}_block{index}")
            except ValueError:
                break
            blocks.append((stage, index, layer))
            index += 1
    return blocks


def _check_model(model):
    blocks = _blocks(model)
    kinds = {type(b) for _, _, b in blocks}
    per_stage = {s: sum(1 for st, _, _ in blocks if st == s) for s in (1, 2, 3)}
    names = {layer.name for layer in model.layers}
    ok = (
        blocks
        and len(kinds) == 1
        and kinds <= {BasicBlock, BottleneckBlock}
        and len(set(per_stage.values())) == 1
        and {"stem_conv", "head_bn", "predictions"} <= names
        and all(getattr(b, "cardinality", 1) == 1 for _, _, b in blocks)
    )
    if not ok:
        raise ValueError(
            "load_reference_weights takes a DampedResNet (the CIFAR ResNet "
            "presets resnet20 ... resnet164 and their in_/lambda_in_ "
            f"variants); the reference has no such model as {model.name!r}."
        )
    same = [b.name for _, _, b in blocks if b.padding != "symmetric"]
    if same:
        raise ValueError(
            f"Blocks {same[:3]}{'...' if len(same) > 3 else ''} pad their strided "
            "convolutions TensorFlow's 'same' way, so the reference's weights "
            "would compute another function. Build the model with "
            "padding='symmetric' (the default)."
        )
    return blocks


def _bn_entries(prefix, bn):
    return {
        f"{prefix}.{torch_name}": (getattr(bn, keras_name), "copy")
        for torch_name, keras_name in _BN_PARTS
    }


def _ignored_bn(prefix, channels):
    names = {f"{prefix}.{t}": (channels,) for t, _ in _BN_PARTS}
    names[f"{prefix}.num_batches_tracked"] = ()
    return names


def reference_layout(model):
    """What a reference state dict for `model` holds.

    Returns:
        `(entries, ignored)`: `entries` maps each name that carries a weight of
        ours to `(variable, kind)` with kind `"conv"`, `"dense"`, `"copy"` or
        `"k"`; `ignored` maps each name that may be present and is not used to
        its shape.
    """
    blocks = _check_model(model)
    bottleneck = isinstance(blocks[0][2], BottleneckBlock)
    expansion = blocks[0][2].expansion if bottleneck else 1
    damped = any(b.damped_add.variant in ("in", "lambda_in") for _, _, b in blocks)
    entries, ignored = {}, {}
    stem = model.get_layer("stem_conv")
    entries["conv1.weight"] = (stem.kernel, "conv")
    ignored.update(_ignored_bn("bn1", stem.filters))
    projections = {1: "downsample1", 2: "downsample21", 3: "downsample31"}
    for i, (stage, _, block) in enumerate(blocks):
        prefix = f"blocks.{i}"
        for j, (bn, conv) in enumerate(zip(block.bns, block.convs), 1):
            entries.update(_bn_entries(f"{prefix}.bn{j}", bn))
            ignored[f"{prefix}.bn{j}.num_batches_tracked"] = ()
            entries[f"{prefix}.conv{j}.weight"] = (conv.kernel, "conv")
        if block.has_projection:
            name = projections[stage]
            entries.update(_bn_entries(f"{name}.downsample.0", block.shortcut_bn))
            ignored[f"{name}.downsample.0.num_batches_tracked"] = ()
            entries[f"{name}.downsample.2.weight"] = (
                block.shortcut_conv.kernel,
                "conv",
            )
        add = block.damped_add
        if add.variant in ("in", "lambda_in"):
            entries[f"ks.{i}"] = (add.k, "k")
        elif damped:
            ignored[f"ks.{i}"] = (1,)
    if not bottleneck:
        # The reference builds a bottleneck-sized downsample1 for every model.
        ignored.update(_ignored_bn("downsample1.downsample.0", 16))
        ignored["downsample1.downsample.2.weight"] = (64, 16, 1, 1)
    if not damped:
        # Its plain ResNet also builds two projections it never calls.
        for name, cin in (("downsample22", 16), ("downsample32", 32)):
            cin *= expansion
            ignored.update(_ignored_bn(f"{name}.downsample.0", cin))
            ignored[f"{name}.downsample.2.weight"] = (2 * cin, cin, 1, 1)
    head = model.get_layer("head_bn")
    entries.update(_bn_entries("bn", head))
    ignored["bn.num_batches_tracked"] = ()
    fc = model.get_layer("predictions")
    entries["fc.weight"] = (fc.kernel, "dense")
    entries["fc.bias"] = (fc.bias, "copy")
    return entries, ignored


def _reference_shape(variable, kind):
    shape = tuple(variable.shape)
    if kind == "conv":
        h, w, i, o = shape
        return (o, i, h, w)
    if kind == "dense":
        return shape[::-1]
    if kind == "k":
        return (1,) if shape == () else shape
    return shape


def _listing(names, limit=8):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def load_reference_weights(model, state):
    """Loads a reference PyTorch state dict into a `DampedResNet`, in place.

    Args:
        model: a `DampedResNet` (plain, `"in"` or `"lambda_in"`) whose depth,
            block kind and classes match the reference model.
        state: `{name: array}` as the reference's `state_dict()` names it,
            e.g. `{k: v.numpy() for k, v in net.state_dict().items()}`
            (no torch needed here).

    Every name is checked before anything is written: a missing, unexpected
    or mis-shaped entry raises a ValueError that lists them, and the model
    is left untouched.

    Returns:
        The model.

    Example:
    ```python
    model = DampedResNet(depth=110, damping="in")
    load_reference_weights(model, {k: v.numpy() for k, v in sd.items()})
    ```
    """
    if not isinstance(state, dict):
        raise ValueError(
            "state must be a dict {name: array} of the reference's state_dict. "
            f"Received: {type(state).__name__}"
        )
    entries, ignored = reference_layout(model)
    missing = [n for n in entries if n not in state]
    unexpected = [n for n in state if n not in entries and n not in ignored]
    wrong = []
    for name, value in state.items():
        shape = tuple(np.shape(value))
        if name in entries:
            expected = _reference_shape(*entries[name])
        elif name in ignored:
            expected = ignored[name]
        else:
            continue
        if shape != tuple(expected):
            wrong.append(f"{name} {shape} (expected {tuple(expected)})")
    problems = []
    if missing:
        problems.append(f"missing: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected: {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shape: {_listing(wrong)}")
    if problems:
        raise ValueError(
            f"The state dict does not fit {model.name!r}; nothing was loaded. "
            + "; ".join(problems)
            + ". Check depth, damping variant and num_classes against the "
            "reference model."
        )
    for name, (variable, kind) in entries.items():
        dtype = keras.backend.standardize_dtype(variable.dtype)
        value = np.asarray(state[name], dtype=dtype)
        if kind == "conv":
            value = value.transpose(2, 3, 1, 0)
        elif kind == "dense":
            value = value.T
        variable.assign(value.reshape(tuple(variable.shape)))
    return model
