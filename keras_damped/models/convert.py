"""`damp(model)`: a damped copy of any functional Keras residual network."""

import keras

from keras_damped.layers.blocks import _PreActivationBlock
from keras_damped.layers.damped_add import DampedAdd


def _producer(tensor):
    """(operation, node) that produced a symbolic tensor, or None for an input."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    operation, node_index, _ = history
    node = operation._inbound_nodes[node_index]
    return None if node.is_input else node


def _distances(tensor):
    """{id(ancestor tensor): number of operations between it and `tensor`}."""
    seen = {id(tensor): 0}
    frontier = [tensor]
    while frontier:
        current = frontier.pop()
        node = _producer(current)
        if node is None:
            continue
        for parent in node.input_tensors:
            distance = seen[id(current)] + 1
            if distance < seen.get(id(parent), float("inf")):
                seen[id(parent)] = distance
                frontier.append(parent)
    return seen


def residual_adds(model):
    """The residual `Add`s of a functional model and the role of their inputs.

    Returns:
        {layer name: (shortcut input index, identity?)} for every
        `keras.layers.Add` of exactly two tensors of one shape. The shortcut
        is the input that is an ancestor of the other (an identity shortcut),
        else the input with the shorter path from their nearest common
        ancestor (a projection or pooling shortcut).
    """
    found = {}
    for layer in model.layers:
        if type(layer) is not keras.layers.Add:
            continue
        for node in layer._inbound_nodes:
            inputs = node.input_tensors
            if len(inputs) != 2 or tuple(inputs[0].shape) != tuple(inputs[1].shape):
                continue
            ancestry = [_distances(t) for t in inputs]
            if id(inputs[0]) in ancestry[1]:
                found[layer.name] = (0, True)
            elif id(inputs[1]) in ancestry[0]:
                found[layer.name] = (1, True)
            else:
                common = set(ancestry[0]) & set(ancestry[1])
                if not common:
                    continue
                nearest = min(common, key=lambda t: ancestry[0][t] + ancestry[1][t])
                shortcut = 0 if ancestry[0][nearest] <= ancestry[1][nearest] else 1
                found[layer.name] = (shortcut, False)
    return found


def damp(model, variant="in", identity_only=False, name=None, **kwargs):
    """A new model in which every residual merge of `model` is damped.

    Every `keras.layers.Add` of two tensors becomes a `DampedAdd` (with the
    shortcut identified from the graph, see `residual_adds`), and every
    keras_damped block with an identity shortcut gets the damping too; all
    other layers and all weights are carried over into new layer objects, so
    `model` itself is untouched.

    Args:
        model: a functional Keras model (e.g. `keras.applications.ResNet50V2`
            or a `DampedResNet`).
        variant, **kwargs: `DampedAdd` arguments (`variant="fixed",
            value=0.0` reproduces the original outputs exactly).
        identity_only: damp only merges with an identity shortcut (the
            paper's rule); projection and pooling shortcuts stay plain adds.
        name: name of the new model; defaults to `damped_<name>`.

    Returns:
        The damped functional `keras.Model`.

    Raises:
        ValueError: the model is not functional or has no residual merge.

    Example:
    ```python
    base = keras.applications.ResNet50V2(weights=None)
    damped = damp(base, "in", identity_only=True)
    ```
    """
    DampedAdd(variant, **kwargs)  # validates the arguments before any work
    if not hasattr(model, "_run_through_graph") or not hasattr(
        model, "_nodes_by_depth"
    ):
        raise ValueError(
            "damp needs a functional Keras model (keras.Model(inputs, outputs) "
            f"or Sequential). Received: {type(model).__name__}"
        )
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    adds = {
        layer_name: role
        for layer_name, role in residual_adds(clone).items()
        if role[1] or not identity_only
    }
    blocks = [
        layer
        for layer in clone.layers
        if isinstance(layer, _PreActivationBlock) and not layer.has_projection
    ]
    if not adds and not blocks:
        raise ValueError(
            f"Model {model.name!r} has no residual merge to damp: no Add of two "
            "tensors of one shape and no keras_damped block with an identity "
            "shortcut."
        )

    def replace(operation):
        if operation.name in adds:
            shortcut = adds[operation.name][0]
            merge = DampedAdd(variant, **kwargs, name=operation.name)
            return lambda inputs, **_: merge([inputs[1 - shortcut], inputs[shortcut]])
        if operation in blocks:
            return _damped_block(operation, variant, kwargs)
        return operation

    inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name)
        for t in clone.inputs
    ]
    outputs = clone._run_through_graph(inputs, operation_fn=replace)
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs,
        name=name or f"damped_{model.name}",
    )


def _damped_block(block, variant, kwargs):
    """A copy of a keras_damped block whose merge is damped, weights carried over."""
    if variant == "fixed":
        damping = kwargs.get("value", 0.0)
        options = {}
    else:
        damping = variant
        options = {k: v for k, v in kwargs.items() if k != "value"}
    config = dict(block.get_config(), damping=damping, damping_options=options)
    new = type(block).from_config(config)

    def call(inputs, **call_kwargs):
        out = new(inputs, **call_kwargs)
        for old_layer, new_layer in zip(block.bns + block.convs, new.bns + new.convs):
            new_layer.set_weights(old_layer.get_weights())
        return out

    return call
