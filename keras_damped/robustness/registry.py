"""One interface for every attack, and the registry that builds them by name.

An attack is a subclass of `Attack`, built by `make_attack(name, model_fn,
budget)` and called as `attack(x, y, eps, seed)`: pixels in [0, 1], true
labels, a radius in pixel units and an explicit seed (a pair of integers,
the only source of its randomness). It returns an `AttackResult`: the
adversarial images, the per-example robust mask and, for a sequence such
as AutoAttack, the mask after each of its stages.

Register an attack of your own with one call and `evaluate`, the CLI
(`--attacks`, with `--import` naming the module that registers it) and
the study accept its name:

    from keras_damped.robustness import Attack, register_attack

    class RandomSign(Attack):
        def perturb(self, x, y, eps, seed):
            sign = tf.sign(tf.random.stateless_uniform(tf.shape(x), seed, -1, 1))
            return tf.clip_by_value(x + eps * sign, 0.0, 1.0)

    register_attack("random_sign", RandomSign)
"""

import dataclasses
import importlib

import numpy as np

from keras_damped.models.logits import ModelLogits
from keras_damped.robustness import standard
from keras_damped.validators import finite_number
from keras_damped.validators import positive_int

NORMS = ("linf", "l2")


def compiled(model_fn, key, build, graphs=None):
    """The graph `key` on `model_fn`, built by `build()` on first use.

    Kept in `model_fn.graphs` when `model_fn` is a `ModelLogits` (what
    `logits_fn` returns: every attack and evaluation of that model shares
    it, no retracing per instance), else in `graphs`, a dict the caller
    owns (an attack's own); with neither, built anew.
    """
    if isinstance(model_fn, ModelLogits):
        graphs = model_fn.graphs
    if graphs is None:
        return build()
    if key not in graphs:
        graphs[key] = build()
    return graphs[key]


@dataclasses.dataclass(frozen=True)
class Budget:
    """What an attack may spend, and in which ball.

    `steps` and `step_size` are those of the iterative attacks (IFGSM, PGD,
    MIM, SPSA; C&W runs `10 * steps` optimisation steps per binary-search
    step); `apgd_steps`, `target_classes` and `square_queries` those of
    AutoAttack's attacks (by default its standard version,
    `keras_damped.robustness.standard`); `jit_compile` compiles the
    CleverHans attacks with XLA. `norm` is the threat model, "linf" or
    "l2": an attack that supports it (`Attack.norms`) runs in that ball;
    one that does not runs in its own (C&W is always L2).
    """

    steps: int = 20
    step_size: float = 2 / 255
    apgd_steps: int = standard.APGD_STEPS
    target_classes: int = standard.TARGET_CLASSES
    square_queries: int = standard.SQUARE_QUERIES
    jit_compile: bool = False
    norm: str = "linf"

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(
                f"norm must be one of {NORMS}. Received: norm={self.norm!r}"
            )
        for name in ("steps", "apgd_steps", "target_classes", "square_queries"):
            positive_int(name, getattr(self, name))
        if finite_number("step_size", self.step_size) <= 0:
            raise ValueError(
                f"step_size must be > 0. Received: step_size={self.step_size!r}"
            )


@dataclasses.dataclass(frozen=True)
class AttackContext:
    """What an attack may need beyond the model and its budget: the model's
    normalisation, per-channel `mean` and `std` in pixel units (the
    authors' protocols attack the normalised tensor). None where unknown."""

    mean: tuple | None = None
    std: tuple | None = None


@dataclasses.dataclass
class AttackResult:
    """`x_adv`: adversarial images (float32 NumPy); `robust`: per example,
    whether the attack failed (the model still right, by the attack's own
    threat model); `stages`: for a sequence, `{stage: robust mask}` after
    each stage (cumulative), else None; `cost`: what the attack counted of
    its work, if it counts (AutoAttack: per stage the images attacked and
    the forward passes; the random starts with a zero input gradient)."""

    x_adv: np.ndarray
    robust: np.ndarray
    stages: dict | None = None
    cost: dict | None = None


class Attack:
    """Base class of every attack.

    Subclasses implement `perturb(x, y, eps, seed) -> x_adv` (tensors), or
    override `__call__` when they compute their robust mask themselves.
    Class attributes describe the attack to `evaluate` and its checks:

    - `norm`: "linf" (eps bounds every pixel's change) or "l2" (eps bounds
      the change's Euclidean norm): the ball the attack runs in unless the
      budget asks for another of its `norms`. An attack joins the worst case
      and the eps-ball check of the evaluation's norm.
    - `norms`: the balls it can run in (default: its `norm` alone); the
      instance's `norm` is the budget's when listed here.
    - `gradient`: True when it follows the model's input gradient, False
      when it only queries outputs (the gradient-masking check compares
      the two kinds).
    - `min_classes`: the fewest classes the model may have.
    - `stages`: the registered names of a sequence's stages, if it is one
      (each stage's mask is reported, and its own declarations apply).
    - `budget_fields`: the `Budget` fields it reads (reports state them).
    - `label`: its name in table headers and plots (default: the
      registered name in capitals).
    - `not_weaker_than`: attacks it must not be weaker than (the sanity
      checks flag it when it is, at a common eps).
    - `example_priority`: the attack with the highest one (the first of
      them) supplies the report's adversarial pictures.
    - `standard_budget`: `{budget field: value}` of its standard version,
      if it has one (AutoAttack): at another budget its label says
      "(reduced)" and reports record `version` "reduced".

    A report records these per attack (`settings["attack_specs"]`, see
    `attack_spec`); the report, the checks and a study read that record,
    never the attack's name.

    Args:
        model_fn: `x -> float32 logits` (`keras_damped.robustness.logits_fn`).
        budget: a `Budget`.
        context: an `AttackContext` (the authors' protocols need the
            model's `mean` and `std`).
    """

    norm = "linf"
    norms = ("linf",)
    gradient = True
    min_classes = 2
    stages = None
    budget_fields = ()
    label = None
    not_weaker_than = ()
    example_priority = 0
    standard_budget = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "norm" in cls.__dict__ and "norms" not in cls.__dict__:
            cls.norms = (cls.norm,)

    def __init__(self, model_fn, budget=None, context=None):
        self.model_fn = model_fn
        self.budget = budget or Budget()
        self.context = context or AttackContext()
        self.norm = run_norm(type(self), self.budget)
        # Graphs compiled for a `model_fn` that is not a `ModelLogits`.
        self.graphs = {}

    def perturb(self, x, y, eps, seed):
        raise NotImplementedError(
            f"{type(self).__name__} must implement perturb(x, y, eps, seed)."
        )

    def cost(self):
        """Work per image in forward-pass equivalents (a gradient costs
        about 3), for honest progress estimates; an upper bound for attacks
        that stop early. Override for your own attack."""
        return 3

    def predict(self, x):
        """Predicted labels of `x` (one compiled graph per model)."""
        import tensorflow as tf

        model_fn = self.model_fn
        graph = compiled(
            model_fn,
            "predict",
            lambda: tf.function(
                lambda v: tf.argmax(model_fn(v), -1, output_type=tf.int32),
                input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32)],
            ),
            self.graphs,
        )
        return graph(tf.convert_to_tensor(x, tf.float32)).numpy()

    def __call__(self, x, y, eps, seed=(0, 0)):
        import tensorflow as tf

        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.convert_to_tensor(y, tf.int32)
        x_adv = tf.convert_to_tensor(self.perturb(x, y, float(eps), seed), tf.float32)
        return AttackResult(x_adv.numpy(), self.predict(x_adv) == y.numpy())


@dataclasses.dataclass(frozen=True)
class _Entry:
    cls: type
    listed: bool


_REGISTRY = {}


def register_attack(name, cls, listed=True, overwrite=False):
    """Makes `cls` (a subclass of `Attack`) available as `name`.

    `listed=False` keeps it out of "all" and of the CLI's list (variants
    built by other parts, such as the authors' protocol attacks).
    Registering a taken name raises unless `overwrite`.
    """
    if not isinstance(name, str) or not name or "," in name or name == "all":
        raise ValueError(
            f"An attack name must be a non-empty string without commas, and not "
            f"'all'. Received: name={name!r}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise TypeError(
            f"register_attack needs a subclass of keras_damped.robustness.Attack. "
            f"Received: {cls!r}"
        )
    for attribute, norms in (("norm", (cls.norm,)), ("norms", cls.norms)):
        for norm in norms:
            if norm not in NORMS:
                raise ValueError(
                    f"{cls.__name__}.{attribute} must be one of {NORMS}. "
                    f"Received: {norm!r}"
                )
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"An attack named {name!r} is registered already "
            f"({_REGISTRY[name].cls.__name__}); pass overwrite=True to replace it."
        )
    _REGISTRY[name] = _Entry(cls, listed)
    return cls


def unregister_attack(name):
    """Removes the attack registered as `name` (a built-in one too)."""
    attack_class(name)
    del _REGISTRY[name]


def attack_names(listed_only=True):
    """The registered attack names, built-in ones first."""
    return tuple(n for n, e in _REGISTRY.items() if e.listed or not listed_only)


def attack_class(name):
    """The class registered as `name`; unknown names list the choices."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown attack. Expected one of {attack_names()} (or 'all'), or a "
            f"name registered with keras_damped.robustness.register_attack. "
            f"Received: attack={name!r}"
        )
    return _REGISTRY[name].cls


def run_norm(cls, budget):
    """The ball an attack of class `cls` runs in under `budget`: the
    budget's norm where the class supports it, else the class's own."""
    return budget.norm if budget.norm in cls.norms else cls.norm


def norm_attacks(norm):
    """The listed attacks that can run in the `norm` ball."""
    return tuple(n for n in attack_names() if norm in attack_class(n).norms)


def make_attack(name, model_fn, budget=None, context=None):
    """The attack registered as `name`, on `model_fn`, with `budget` and
    `context` (an `AttackContext`)."""
    return attack_class(name)(model_fn, budget or Budget(), context)


def attack_spec(name, budget=None):
    """What a report records of the attack registered as `name`: its
    `label`, `version` ("standard" or "reduced" for an attack with a
    `standard_budget`, else None), `norm`, `gradient`, `stages` (a
    sequence's stage names, else None), the `budget` it ran with (only the
    fields it reads) and the attacks it must not be weaker than."""
    cls = attack_class(name)
    budget = budget or Budget()
    version = None
    if cls.standard_budget:
        standard = all(getattr(budget, k) == v for k, v in cls.standard_budget.items())
        version = "standard" if standard else "reduced"
    label = cls.label or name.upper()
    return {
        "label": f"{label} (reduced)" if version == "reduced" else label,
        "version": version,
        "norm": run_norm(cls, budget),
        "gradient": cls.gradient,
        "stages": list(cls.stages) if len(cls.stages or ()) > 1 else None,
        "budget": {field: getattr(budget, field) for field in cls.budget_fields},
        "not_weaker_than": list(cls.not_weaker_than),
    }


def attack_specs(names, budget=None):
    """`{name: attack_spec(name, budget)}` for `names` and the stages of
    the sequences among them."""
    specs = {}
    for name in names:
        specs[name] = attack_spec(name, budget)
        for stage in specs[name]["stages"] or ():
            specs.setdefault(stage, attack_spec(stage, budget))
    return specs


def parse_attacks(attacks):
    """Attack names, checked; "all" (alone or in the list) means every listed
    attack."""
    if isinstance(attacks, str):
        attacks = [attacks]
    names = []
    for name in attacks:
        for attack in attack_names() if name == "all" else [name]:
            attack_class(attack)
            if attack not in names:
                names.append(attack)
    return names


def import_plugins(modules):
    """Imports the modules that register users' attacks (`--import`)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(
                f"Cannot import the plug-in module {module!r} ({error}). It must "
                "be importable (on PYTHONPATH) and register its attacks with "
                "keras_damped.robustness.register_attack."
            ) from None
