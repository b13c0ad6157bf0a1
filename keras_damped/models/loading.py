"""Loading saved models and naming them for side-by-side reports."""

import os

import keras


def load_model_file(path):
    """Loads a `.keras` model with a clear error for a missing or corrupt file."""
    if not os.path.isfile(path):
        raise ValueError(f"No such model file. Received: model={path!r}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(
            f"Cannot load the model file {path!r} (missing or corrupt): "
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        ) from None


def named_models(models):
    """`{label: model}` from a model, a `.keras` path, or a list / dict of them.

    A path is labelled by its model's name; two models of the same name get
    their folder's name in brackets, and any remaining clash a `#2`, `#3`.
    """
    if isinstance(models, (keras.Model, str)):
        models = [models]
    if isinstance(models, dict):
        items = list(models.items())
    else:
        loaded = []
        for model in models:
            if isinstance(model, str):
                parent = os.path.basename(os.path.dirname(os.path.abspath(model)))
                model = load_model_file(model)
                loaded.append((model.name, model, parent))
            else:
                loaded.append((model.name, model, None))
        names = [label for label, _, _ in loaded]
        items = [
            (f"{label} ({parent})" if names.count(label) > 1 and parent else label, m)
            for label, m, parent in loaded
        ]
        seen = {}
        for i, (label, model) in enumerate(items):
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                items[i] = (f"{label} #{seen[label]}", model)
    if not items:
        raise ValueError("evaluate needs at least one model.")
    labels = [label for label, _ in items]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Model names must be unique. Received: {labels}")
    return dict(items)
