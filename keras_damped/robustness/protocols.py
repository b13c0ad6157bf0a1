"""The authors' evaluation protocols, replayed beside the standard one.

The paper's robustness numbers come from the authors' attack and noise
scripts (minicheshire/InResNet), which differ from a pixel-space L-infinity
evaluation (docs/paper.md section 5). Three protocols:

* `pixel`: the standard threat model (pixels in [0, 1], eps in pixels);
  what `evaluate()` measures with every attack.
* `authors-2020-06`, the first release (published with the paper): the
  attacks work on the normalised tensor `z = (x - mean) / std`; eps and the
  IFGSM/PGD step (2/255) are in units of z, so a pixel radius of `eps * std`
  per channel; after every step z is clamped to [0, 1], which in pixels
  keeps only the band [mean, mean + std] of each channel (also at eps = 0);
  PGD's projection ball is centred at its random start, so a point may lie
  up to 2 eps from the clean image.
* `authors-2020-08`, the August 2020 update: eps and the step (1/255) are
  divided by each channel's std (pixel-equivalent radii), z is clamped to
  the image's range, PGD's ball is still centred at the random start.

Both authors' versions standardise each noise "file" (one noise's
severities stacked, over the evaluated images) by its own per-channel mean
and std instead of the training constants. The attacks the authors ran are
FGSM, IFGSM and PGD, 20 steps each; IFGSM starts at the clean image.
"""

import numpy as np
import tensorflow as tf

from keras_damped.robustness.registry import Attack
from keras_damped.robustness.registry import compiled
from keras_damped.robustness.registry import register_attack

PROTOCOLS = ("pixel", "authors-2020-06", "authors-2020-08")
AUTHORS_PROTOCOLS = PROTOCOLS[1:]
AUTHORS_ATTACKS = ("fgsm", "ifgsm", "pgd")
AUTHORS_STEPS = 20
# The IFGSM/PGD step: 2/255 in normalised units (June), 1/255 in pixels
# (August, divided by each channel's std like eps).
AUTHORS_STEP = {"authors-2020-06": 2 / 255, "authors-2020-08": 1 / 255}


def check_protocols(protocols, attacks):
    """The protocol names, checked; authors' protocols only with their attacks."""
    if isinstance(protocols, str):
        protocols = [protocols]
    protocols = list(dict.fromkeys(protocols))
    for name in protocols:
        if name not in PROTOCOLS:
            raise ValueError(
                f"Unknown protocol. Expected one of {PROTOCOLS}. "
                f"Received: protocol={name!r}"
            )
    if not protocols:
        raise ValueError(f"protocols must name at least one of {PROTOCOLS}.")
    if any(p in AUTHORS_PROTOCOLS for p in protocols):
        other = [a for a in attacks if a not in AUTHORS_ATTACKS]
        if other:
            raise ValueError(
                f"The authors' protocols cover the attacks they ran, "
                f"{AUTHORS_ATTACKS}. Received: attack={other[0]!r} under "
                f"{[p for p in protocols if p in AUTHORS_PROTOCOLS]} (give the "
                "authors' protocols their own attacks with protocol_attacks / "
                "--protocol-attacks)."
            )
    return protocols


def model_normalization(model, mean=None, std=None):
    """The per-channel (mean, std) in pixel units that `model` normalises with.

    Read from a `keras.layers.Normalization` applied directly to the model's
    input (every keras_damped model has one); `mean` and `std` given
    explicitly take precedence (a model that normalises otherwise, or one
    trained on inputs normalised outside it).
    """
    import keras

    channels = model.input_shape[-1]
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError(
                "Pass both mean= and std= (pixel units, one value or one per "
                f"channel). Received: mean={mean!r}, std={std!r}"
            )
        mean = np.broadcast_to(np.asarray(mean, "float64"), (channels,)).copy()
        std = np.broadcast_to(np.asarray(std, "float64"), (channels,)).copy()
        if not np.all(std > 0):
            raise ValueError(f"std must be positive. Received: std={std.tolist()}")
        return mean, std
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Normalization) and not layer.invert:
            inbound = getattr(layer, "_inbound_nodes", [])
            feeds = [t for node in inbound for t in node.input_tensors]
            if any(t is model.inputs[0] for t in feeds) or not feeds:
                mean = np.asarray(layer.mean, "float64").reshape(-1)
                var = np.asarray(layer.variance, "float64").reshape(-1)
                shape = (channels,)
                return (
                    np.broadcast_to(mean, shape).copy(),
                    np.broadcast_to(np.sqrt(var), shape).copy(),
                )
        break
    raise ValueError(
        f"Model {model.name!r} has no keras.layers.Normalization on its input, "
        "so the mean and std the authors' protocols normalise with are unknown "
        "(a damp()-converted application or your own network). Pass them "
        "explicitly: evaluate(..., mean=[...], std=[...]) in pixel units, or "
        "--mean/--std on the command line."
    )


def pixel_radius(protocol, eps, std):
    """The per-channel pixel radius of a stated radius `eps` under `protocol`."""
    std = np.asarray(std, "float64")
    if protocol == "authors-2020-06":
        return eps * std
    return np.full_like(std, eps)


def _bounds(protocol, mean, std):
    """(lo, hi) of the clamp on the normalised tensor z."""
    if protocol == "authors-2020-06":
        return np.zeros_like(mean), np.ones_like(mean)
    return (0.0 - mean) / std, (1.0 - mean) / std


def _z_units(protocol, std, value):
    """A stated radius or step as a per-channel size in units of z."""
    if protocol == "authors-2020-06":
        return np.full_like(std, value)
    return value / std


def _authors_steps(model_fn, x, y, norm, eps, fgsm, steps, start, seed):
    """One authors' attack on `z = (x - mean) / std`, returned in pixels.

    `norm`: per-channel `(mean, std, low, high, unit, step)`, where `low`,
    `high` bound z, `unit` is a stated radius of 1 and `step` the IFGSM/PGD
    step, both in z; `fgsm`: the step is the radius; `steps`: 1 or 20;
    `start`: 1.0 adds PGD's random start (and centres the ball on it), 0.0
    starts at the clean image. FGSM's projection on its ball is the
    identity.
    """
    m, s, low, high, unit, step = norm
    radius = eps * unit
    size = tf.where(fgsm, radius, step)
    z = (x - m) / s
    z = z + (radius * start) * tf.random.stateless_uniform(
        tf.shape(z), seed, minval=-1.0, maxval=1.0, dtype=z.dtype
    )
    centre = z
    for _ in tf.range(steps):
        with tf.GradientTape() as tape:
            tape.watch(z)
            logits = tf.cast(model_fn(z * s + m), z.dtype)
            loss = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
            )
        z = z + size * tf.sign(tape.gradient(loss, z))
        z = tf.clip_by_value(z, centre - radius, centre + radius)
        z = tf.clip_by_value(z, low, high)
    return z * s + m


class AuthorsAttack(Attack):
    """An authors' attack (`kind`: FGSM, IFGSM or PGD) under `protocol`.

    Registered as "<protocol>:<kind>" (not listed: `evaluate` runs them
    through `protocols=`); built with the model's `mean` and `std` (pixel
    units, per channel) in its `AttackContext`. `eps` is the stated radius (k/255); the
    call's seed draws PGD's random start. One graph per model serves every
    protocol and kind.
    """

    protocol = None
    kind = None

    def cost(self):
        return 3 if self.kind == "fgsm" else 3 * AUTHORS_STEPS

    def perturb(self, x, y, eps, seed):
        if self.context.mean is None or self.context.std is None:
            raise ValueError(
                f"{type(self).__name__} attacks the normalised tensor: build it "
                "with context=AttackContext(mean=..., std=...) (pixel units, per "
                "channel)."
            )
        mean = np.asarray(self.context.mean, "float64")
        std = np.asarray(self.context.std, "float64")
        lo, hi = _bounds(self.protocol, mean, std)
        norm = [
            np.broadcast_to(v, std.shape)
            for v in (
                mean,
                std,
                lo,
                hi,
                _z_units(self.protocol, std, 1.0),
                _z_units(self.protocol, std, AUTHORS_STEP[self.protocol]),
            )
        ]
        model_fn, dtype = self.model_fn, x.dtype

        def build():
            def run(x, y, norm, eps, fgsm, steps, start, seed):
                return _authors_steps(
                    model_fn, x, y, norm, eps, fgsm, steps, start, seed
                )

            vector = tf.TensorSpec(std.shape, dtype)
            return tf.function(
                run,
                input_signature=[
                    tf.TensorSpec((None, *x.shape[1:]), dtype),
                    tf.TensorSpec((None,), tf.int32),
                    [vector] * 6,
                    tf.TensorSpec((), dtype),
                    tf.TensorSpec((), tf.bool),
                    tf.TensorSpec((), tf.int32),
                    tf.TensorSpec((), dtype),
                    tf.TensorSpec((2,), tf.int64),
                ],
            )

        # One graph per model and dtype (evaluate() feeds float32).
        graph = compiled(model_fn, ("authors", dtype.name), build, self.graphs)
        return graph(
            x,
            tf.cast(y, tf.int32),
            [tf.constant(v, dtype) for v in norm],
            tf.constant(eps, dtype),
            tf.constant(self.kind == "fgsm"),
            tf.constant(1 if self.kind == "fgsm" else AUTHORS_STEPS, tf.int32),
            tf.constant(1.0 if self.kind == "pgd" else 0.0, dtype),
            tf.constant(seed, tf.int64),
        )


def protocol_attack_name(protocol, attack):
    """The registry name of an authors' attack under `protocol`."""
    return f"{protocol}:{attack}"


for _protocol in AUTHORS_PROTOCOLS:
    for _kind in AUTHORS_ATTACKS:
        register_attack(
            protocol_attack_name(_protocol, _kind),
            type(
                f"Authors{_kind.upper()}",
                (AuthorsAttack,),
                {"protocol": _protocol, "kind": _kind},
            ),
            listed=False,
        )


def clamp_only(protocol, x, mean, std):
    """The clean images as the protocol's clamp leaves them (eps = 0)."""
    lo, hi = _bounds(protocol, np.asarray(mean, "float64"), np.asarray(std, "float64"))
    z = np.clip((x - mean) / std, lo, hi)
    return (z * std + mean).astype(x.dtype)


def standardise_file(stack, mean, std):
    """One noise's severities stacked, as the authors' noise script feeds them.

    The file is standardised by its own per-channel mean and (population)
    std over all its pixels; the model, which normalises with the training
    `mean` and `std` itself, is given the pixels that make its first layer
    produce exactly that tensor.

    Args:
        stack: images `(severities * n, h, w, c)` in [0, 1].

    Returns:
        The model's input, and the file's (mean, std) per channel.
    """
    stack = np.asarray(stack, "float64")
    axes = tuple(range(stack.ndim - 1))
    file_mean, file_std = stack.mean(axes), stack.std(axes)
    z = (stack - file_mean) / file_std
    return (z * std + mean).astype("float32"), file_mean, file_std
