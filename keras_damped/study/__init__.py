"""Studies: models x seeds, trained and evaluated alike, compared with intervals.

`run_study(StudyConfig(...))` (or `keras-damped study`) composes `train()`
and `evaluate()`; this package adds only the statistics over seeds
(`stats`) and the multi-run outputs (`outputs`).
"""

from keras_damped._extras import require

require("study", "study")

from keras_damped.study.config import StudyConfig
from keras_damped.study.runner import StudyExistsError
from keras_damped.study.runner import run_study
from keras_damped.study.stats import paired_difference
from keras_damped.study.stats import summarize

__all__ = [
    "StudyConfig",
    "StudyExistsError",
    "paired_difference",
    "run_study",
    "summarize",
]
