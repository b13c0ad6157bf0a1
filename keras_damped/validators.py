"""The checks every setting goes through, in one place.

Each raises ValueError naming the setting, the value received and what is
valid, before any work is done. Imports nothing beyond the standard library
and NumPy, so the core install (layers and models) can use it.
"""

import math

import numpy as np

# An L-infinity radius is in (0, 255] in units of 1/255: beyond 255 the ball
# holds every image, and a radius of 0 is the clean accuracy (reported anyway).
MAX_EPS_255 = 255.0


def is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive_int(name, value):
    """`value` as an int >= 1."""
    if not is_int(value) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def optional_positive_int(name, value):
    """None, or `value` as an int >= 1."""
    return None if value is None else positive_int(name, value)


def non_negative_int(name, value):
    """`value` as an int >= 0 (seeds)."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0. Received: {name}={value!r}")
    return int(value)


def finite_number(name, value, minimum=None):
    """`value` as a finite float, at least `minimum` when given."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or (minimum is not None and value < minimum)
    ):
        at_least = "" if minimum is None else f" >= {minimum:g}"
        raise ValueError(
            f"{name} must be a finite number{at_least}. Received: {name}={value!r}"
        )
    return float(value)


def choice(name, value, choices):
    """`value` if it is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Unknown {name}. Expected one of {tuple(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value


def _radii(name, values, inside, complaint):
    """`values` (one number or several) as sorted distinct floats, each a
    real number (not a bool) for which `inside` holds; else ValueError with
    `complaint(value)`."""
    if isinstance(values, (int, float, np.integer, np.floating)):
        values = [values]
    out = []
    for value in values:
        number = not isinstance(value, bool) and isinstance(
            value, (int, float, np.integer, np.floating)
        )
        if not (number and math.isfinite(value) and inside(float(value))):
            raise ValueError(complaint(value))
        out.append(float(value))
    return sorted(set(out))


def l2_eps_list(name, values):
    """L2 radii in pixel units (0.5: the Euclidean length of the whole
    change), each positive and finite; sorted, duplicates removed."""
    return _radii(
        name,
        values,
        lambda v: v > 0,
        lambda v: (
            f"{name} must be L2 radii, positive finite numbers in pixel "
            f"units (e.g. 0.5). Received: {name}={v!r}"
        ),
    )


def eps_list(name, values):
    """L-infinity radii in pixel units (8/255), each in (0, 255/255]; sorted,
    duplicates removed. The message gives the radius in units of 1/255."""

    def complaint(value):
        shown = (
            f"{255 * value:g}/255"
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else repr(value)
        )
        return (
            f"{name} must be radii in (0, 255] in units of 1/255 (pixel units "
            f"(0, 1], e.g. 8/255; 255 is the whole pixel range). "
            f"Received: {name}={shown}"
        )

    return _radii(
        name, values, lambda v: 0 < round(255 * v, 6) <= MAX_EPS_255, complaint
    )
