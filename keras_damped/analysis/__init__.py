"""Analysis: input-space loss landscapes and the stability of damped networks."""

from keras_damped._extras import require

require("analysis", "analysis")

from keras_damped.analysis.landscape import DIRECTIONS
from keras_damped.analysis.landscape import direction
from keras_damped.analysis.landscape import landscape_1d
from keras_damped.analysis.landscape import landscape_2d
from keras_damped.analysis.report import analyze
from keras_damped.analysis.report import analyze_saved
from keras_damped.analysis.report import plots
from keras_damped.analysis.report import save_analysis
from keras_damped.analysis.stability import block_spectral_norms
from keras_damped.analysis.stability import damping_by_depth
from keras_damped.analysis.stability import perturbation_growth
from keras_damped.analysis.stability import spectral_norm

__all__ = [
    "DIRECTIONS",
    "analyze",
    "analyze_saved",
    "block_spectral_norms",
    "damping_by_depth",
    "direction",
    "landscape_1d",
    "landscape_2d",
    "perturbation_growth",
    "plots",
    "save_analysis",
    "spectral_norm",
]
