"""One extra installed alone (`pip install .[EXTRA]` in a fresh virtual
environment): its part imports with its public names, and nothing that only
another extra installs is needed or present.

    python .ci/extra_alone.py EXTRA
"""

import importlib
import importlib.util
import sys

# Extra -> (the part it enables, the public names to import, modules of
# other extras that it must import without).
PARTS = {
    "train": (
        "keras_damped.training",
        ("TrainConfig", "train", "resolve_jit_compile"),
        ("cleverhans",),
    ),
    "robustness": (
        "keras_damped.robustness",
        ("EvalConfig", "evaluate", "make_attack", "register_attack"),
        (),
    ),
    "analysis": (
        "keras_damped.analysis",
        ("analyze", "landscape_1d", "perturbation_growth", "spectral_norm"),
        ("cleverhans",),
    ),
    "study": (
        "keras_damped.study",
        ("StudyConfig", "run_study", "summarize"),
        (),
    ),
}

extra = sys.argv[1]
part, names, foreign = PARTS[extra]
present = [m for m in foreign if importlib.util.find_spec(m) is not None]
assert not present, f"[{extra}] installed {present}, which it does not need"
module = importlib.import_module(part)
missing = [n for n in names if not hasattr(module, n)]
assert not missing, f"{part} lacks {missing}"
print(f"[{extra}] alone: {part} imports {', '.join(names)}")
