"""The optional parts of the package and the extras that install them.

`pip install keras-damped` gives the layers, blocks, models, their registry,
`damp()` and `load_reference_weights` with Keras and NumPy only (any Keras
backend). The parts below need more; each checks on import that its extra
is installed and otherwise names it.
"""

import importlib.util

# Extra -> the modules it brings (import names).
EXTRAS = {
    "train": ("tensorflow", "tensorflow_datasets", "tensorboard"),
    "robustness": ("tensorflow", "tensorflow_datasets", "cleverhans", "matplotlib"),
    "analysis": ("tensorflow", "tensorflow_datasets", "matplotlib"),
    "study": (
        "tensorflow",
        "tensorflow_datasets",
        "tensorboard",
        "cleverhans",
        "matplotlib",
        "scipy",
    ),
}


def require(part, extra):
    """Raises ImportError naming `extra` when a module it brings is missing."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"keras_damped.{part} needs the [{extra}] extra, which is not "
            f"installed (missing: {', '.join(missing)}). Install it with: "
            f"pip install 'keras-damped[{extra}]' (or [all])."
        )
