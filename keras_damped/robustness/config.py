"""`EvalConfig`: every setting of an evaluation, validated before any work."""

import dataclasses

from keras_damped._fields import setting
from keras_damped.data.corruptions import NOISES
from keras_damped.data.corruptions import SEVERITIES
from keras_damped.robustness.registry import NORMS
from keras_damped.robustness.registry import Budget
from keras_damped.training.config import JIT_CHOICES
from keras_damped.validators import choice
from keras_damped.validators import eps_list
from keras_damped.validators import finite_number
from keras_damped.validators import l2_eps_list
from keras_damped.validators import non_negative_int
from keras_damped.validators import optional_positive_int
from keras_damped.validators import positive_int

NOISE_SOURCES = ("auto", "tfds", "generated")
_BUDGET = Budget()
# The radii an evaluation runs at unless told (pixel units), per threat
# model: L-infinity 1-8/255; L2 around CIFAR-10's standard 0.5.
DEFAULT_EPS = {
    "linf": (1 / 255, 2 / 255, 4 / 255, 8 / 255),
    "l2": (0.25, 0.5, 1.0),
}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What `evaluate` measures and how; `validate()` checks it all.

    A config is frozen: `dataclasses.replace(config, ...)` makes a changed
    copy, and `validate()` returns a new, normalised one. Values derived
    from others (`protocol_radii()`, `protocol_attack_names()`, `budget()`)
    are computed when asked, never stored, so a changed copy of a validated
    config never keeps a stale one.

    Radii (`eps`, `attack_eps`, `protocol_eps`, `large_eps`, `step_size`)
    are in pixel units: L-infinity radii (8/255) each in (0, 255/255], L2
    radii (0.5, the length of the whole change) any positive number.

    Attributes:
        dataset: a dataset name (`keras_damped.data`), or `(images,
            labels)` arrays (recorded as "arrays").
        attacks: registered attack names (`attack_names()`), or "all".
        norm: the threat model, "linf" or "l2": every attack that can runs
            in that ball (`Attack.norms`; in "l2" every attack must), the
            worst case and the eps-ball check are taken in it.
        eps: the radii every attack runs at (None: `DEFAULT_EPS` of the
            norm).
        attack_eps: `{attack: [radii]}`, radii of one attack instead of
            `eps` (e.g. AutoAttack at fewer radii than PGD).
        noises, severities: the CIFAR-10-C noise group and its severities.
        noise_levels: `{noise: [c, ...]}`, explicit noise parameters beyond
            the five severities (a Gaussian sweep), always generated.
        test_limit: the first `test_limit` test images (clean, noise).
        attack_limit: attack only the first `attack_limit` of them (None:
            all); attacks cost hundreds of passes per image, the rest one.
        batch_size: images per batch.
        seed: seeds the noise and every attack's random draws (an attack
            gets `(seed, batch index)`).
        noise_source: "auto" (CIFAR-10-C files through TFDS for cifar10
            when present, else generated), "tfds" or "generated".
        data_dir: the TFDS data folder.
        steps, step_size: the iterative attacks' (20 steps of 2/255).
        apgd_steps, target_classes, square_queries: AutoAttack's budget.
        large_eps: the radius of the gradient-masking check (64/255); in
            L2 the check runs at large_eps * sqrt(pixels), the L2 ball that
            holds that L-infinity ball.
        jit_compile: "auto", "on" or "off", as for training
            (`keras_damped.training.resolve_jit_compile`): whether the
            attacks' graphs are compiled with XLA ("auto": on accelerators
            and on the CPUs where XLA is faster). True and False are read as
            "on" and "off".
        protocols: from `PROTOCOLS`: "pixel" runs `attacks` in the standard
            threat model; the authors' protocols replay their scripts.
        protocol_attacks, protocol_eps: the authors' protocols' attacks and
            stated radii (None: `attacks`, `eps`; see
            `protocol_attack_names()`, `protocol_radii()`).
        mean, std: the normalisation (pixel units, per channel) of models
            without a `Normalization` layer on their input.
        examples_shown: images kept for the picture grid.
        example_attack: the attack whose images the grid shows (default:
            PGD when it runs, else the first attack).
        plugins: modules to import first (they register attacks).
    """

    dataset: str = setting(
        "fashion_mnist",
        help="cifar10, cifar100 or fashion_mnist (the offline default, as in "
        "train and study)",
    )
    attacks: list = setting(
        factory=lambda: ["fgsm", "ifgsm", "pgd"],
        help="comma-separated registered attacks: fgsm, ifgsm, pgd, mim, cw_l2, "
        "spsa, apgd_ce, apgd_t, fab_t, square, autoattack (APGD-CE, APGD-T, "
        "FAB-T, Square in sequence), your own (see --import); 'all' for every "
        "attack, 'none' for no attack",
    )
    norm: str = setting(
        "linf",
        help="the threat model: linf (radii in units of 1/255) or l2 (radii "
        "absolute, in pixel units: the change's Euclidean length; CIFAR-10's "
        "standard is 0.5)",
    )
    eps: list | None = setting(
        None,
        help="radii, comma-separated (default: 1,2,4,8 in units of 1/255 for "
        "linf, each in (0, 255]; 0.25,0.5,1 for l2)",
    )
    attack_eps: dict = setting(
        factory=dict,
        help="radii of one attack instead of --eps, e.g. autoattack=1,2; "
        "several attacks separated by ';'",
    )
    noises: list = setting(
        factory=lambda: list(NOISES), help="comma-separated, or 'none'"
    )
    severities: list = setting(
        factory=lambda: list(SEVERITIES), help="e.g. 1,5 or 1-5 or 1,3-5"
    )
    noise_levels: dict = setting(
        factory=dict,
        help="explicit noise parameters beyond the severities, e.g. "
        "gaussian=0.15,0.2,0.3,0.4 (sigmas); several noises separated by ';'",
    )
    test_limit: int = setting(
        1000,
        help="the first N test examples (clean accuracy, noise; the study also "
        "validates on them)",
    )
    attack_limit: int | None = setting(
        None,
        help="attack only the first N of the --test-limit examples (default: "
        "all); clean accuracy and noise use all of them",
    )
    batch_size: int = setting(128, help="images per batch of the evaluation")
    seed: int = setting(0, help="seeds the noise and every attack's random draws")
    noise_source: str = setting(
        "auto",
        help="where the CIFAR-10-C noise comes from: auto (the TFDS files for "
        "cifar10 when present, else generated), tfds or generated",
    )
    data_dir: str | None = setting(None, help="TFDS data folder")
    steps: int = setting(
        _BUDGET.steps, help="iterations of IFGSM, PGD, MIM and SPSA (C&W runs 10x)"
    )
    step_size: float = setting(
        _BUDGET.step_size, help="step of the iterative attacks, pixel units"
    )
    apgd_steps: int = setting(
        _BUDGET.apgd_steps,
        help="iterations of APGD-CE and of each APGD-T target (AutoAttack's "
        "standard: 100)",
    )
    target_classes: int = setting(
        _BUDGET.target_classes,
        help="target classes of APGD-T (AutoAttack's standard: 9)",
    )
    square_queries: int = setting(
        _BUDGET.square_queries,
        help="queries of the Square attack (AutoAttack's standard: 5000)",
    )
    large_eps: float = setting(
        64 / 255, help="radius of the gradient-masking check, pixel units"
    )
    jit_compile: str = setting(
        "auto",
        help="compile the attacks with XLA: auto (as for training: on "
        "accelerators and on the CPUs where XLA is faster), on or off",
    )
    protocols: list = setting(
        factory=lambda: ["pixel"],
        help="comma-separated: pixel (the standard threat model), "
        "authors-2020-06 (the authors' scripts published with the paper), "
        "authors-2020-08 (their August 2020 update)",
    )
    protocol_attacks: list | None = setting(
        None,
        help="the attacks of the authors' protocols, from fgsm, ifgsm, pgd "
        "(default: --attacks)",
    )
    protocol_eps: list | None = setting(
        None,
        help="the stated radii of the authors' protocols in units of 1/255 "
        "(default: --eps)",
    )
    mean: list | None = setting(
        None,
        help="per-channel mean in pixel units, comma-separated, for the "
        "authors' protocols on a model without a Normalization layer on its "
        "input",
    )
    std: list | None = setting(None, help="the same for the std")
    examples_shown: int = setting(4, help="images kept for the picture grid")
    example_attack: str | None = setting(
        None, help="the attack whose images the grid shows (default: PGD)"
    )
    plugins: list = setting(
        factory=list,
        help="comma-separated modules to import first: they register attacks "
        "of your own (keras_damped.robustness.register_attack)",
    )

    def validate(self):
        """A new config with every setting checked and normalised (sorted
        radii, "all" expanded); raises ValueError naming the first bad one."""
        from keras_damped.data.corruptions import check_level
        from keras_damped.robustness.protocols import check_protocols
        from keras_damped.robustness.registry import parse_attacks

        self._check_dataset()
        choice("norm", self.norm, NORMS)
        plugins, attacks, eps, attack_eps = self._checked_attacks()
        severities = self._checked_noises()
        self._check_counts()
        (large_eps,) = eps_list("large_eps", [self.large_eps])
        protocol_attacks = (
            None
            if self.protocol_attacks is None
            else parse_attacks(self.protocol_attacks)
        )
        protocol_eps = (
            None
            if self.protocol_eps is None
            else eps_list("protocol_eps", self.protocol_eps)
        )
        for name in ("mean", "std"):
            for value in _as_list(getattr(self, name)) or []:
                finite_number(name, value)
        if self.example_attack is not None and self.example_attack not in attacks:
            raise ValueError(
                f"example_attack must be one of the attacks {attacks}. "
                f"Received: example_attack={self.example_attack!r}"
            )
        config = dataclasses.replace(
            self,
            plugins=plugins,
            attacks=attacks,
            eps=eps,
            attack_eps=attack_eps,
            noises=[n for n in NOISES if n in self.noises],
            severities=severities,
            noise_levels={
                noise: sorted({check_level(noise, c) for c in levels})
                for noise, levels in self.noise_levels.items()
            },
            large_eps=large_eps,
            jit_compile=jit_setting(self.jit_compile),
            protocol_attacks=protocol_attacks,
            protocol_eps=protocol_eps,
        )
        config = dataclasses.replace(
            config,
            protocols=check_protocols(self.protocols, config.protocol_attack_names()),
        )
        if config.authors_protocols() and not config.protocol_radii():
            raise ValueError("The authors' protocols need at least one protocol_eps.")
        if config.norm != "linf" and config.authors_protocols():
            raise ValueError(
                f"The authors' protocols are L-infinity attacks; with norm="
                f"{config.norm!r} only protocols=['pixel'] runs. Received: "
                f"protocols={config.protocols}"
            )
        # Checks steps, step_size and AutoAttack's budget; `jit_compile` is
        # resolved only when the attacks are built (resolving it lists
        # TensorFlow's devices, which fixes its thread counts for good).
        config.budget(jit_compile=False)
        return config

    def _check_dataset(self):
        from keras_damped.data.pipeline import dataset_info

        if isinstance(self.dataset, str):
            dataset_info(self.dataset)
        elif not (isinstance(self.dataset, (tuple, list)) and len(self.dataset) == 2):
            raise ValueError(
                "dataset must be a dataset name or (images, labels) arrays. "
                f"Received: dataset of type {type(self.dataset).__name__}"
            )

    def _checked_attacks(self):
        """(plug-ins, attacks, eps, attack_eps), checked and normalised; the
        plug-ins are imported first (they register attacks)."""
        from keras_damped.robustness.registry import attack_class
        from keras_damped.robustness.registry import import_plugins
        from keras_damped.robustness.registry import norm_attacks
        from keras_damped.robustness.registry import parse_attacks

        plugins = [str(m) for m in _as_list(self.plugins)]
        import_plugins(plugins)
        attacks = parse_attacks(self.attacks)
        if self.norm != "linf":
            unable = [a for a in attacks if self.norm not in attack_class(a).norms]
            if unable:
                raise ValueError(
                    f"Attacks {unable} cannot run in the {self.norm} ball. "
                    f"Expected attacks among {norm_attacks(self.norm)}. "
                    f"Received: attacks={attacks}, norm={self.norm!r}"
                )
        radii = l2_eps_list if self.norm == "l2" else eps_list
        given = DEFAULT_EPS[self.norm] if self.eps is None else self.eps
        eps = radii("eps", given) if _as_list(given) else []
        unknown = [a for a in self.attack_eps if a not in attacks]
        if unknown:
            raise ValueError(
                f"attack_eps names attacks that do not run: {unknown}. Expected "
                f"names among attacks={attacks}."
            )
        attack_eps = {
            a: radii(f"attack_eps[{a!r}]", v) for a, v in self.attack_eps.items()
        }
        missing = [a for a in attacks if not attack_eps.get(a, eps)]
        if missing:
            raise ValueError(
                f"Attacks need at least one eps. Received: eps=[] for {missing}."
            )
        return plugins, attacks, eps, attack_eps

    def _checked_noises(self):
        """The severities as integers, every noise and severity checked."""
        from keras_damped.data.corruptions import check_noise

        for noise in _as_list(self.noises):
            check_noise(noise, 1)
        severities = [int(s) for s in _as_list(self.severities)]
        for severity in severities:
            check_noise("gaussian", severity)
        return severities

    def _check_counts(self):
        positive_int("test_limit", self.test_limit)
        optional_positive_int("attack_limit", self.attack_limit)
        positive_int("batch_size", self.batch_size)
        non_negative_int("seed", self.seed)
        positive_int("examples_shown", self.examples_shown)
        choice("noise_source", self.noise_source, NOISE_SOURCES)

    def protocol_attack_names(self):
        """The authors' protocols' attacks: `protocol_attacks`, else `attacks`."""
        if self.protocol_attacks is None:
            return list(self.attacks)
        return list(self.protocol_attacks)

    def protocol_radii(self):
        """The authors' protocols' stated radii: `protocol_eps`, else `eps`."""
        return list(self.eps if self.protocol_eps is None else self.protocol_eps)

    def eps_of(self, attack):
        """The radii `attack` runs at."""
        return self.attack_eps.get(attack, self.eps)

    def large_radius(self, pixels):
        """The gradient-masking check's radius for images of `pixels` values:
        `large_eps` in L-infinity, large_eps * sqrt(pixels) in L2."""
        if self.norm == "l2":
            return self.large_eps * pixels**0.5
        return self.large_eps

    def pixel_attacks(self):
        """The attacks of the pixel protocol (none without it)."""
        return list(self.attacks) if "pixel" in self.protocols else []

    def authors_protocols(self):
        from keras_damped.robustness.protocols import AUTHORS_PROTOCOLS

        return [p for p in self.protocols if p in AUTHORS_PROTOCOLS]

    def all_eps(self):
        """Every radius some pixel attack runs at, sorted."""
        return sorted({e for a in self.pixel_attacks() for e in self.eps_of(a)})

    def budget(self, **changes):
        """The attacks' `Budget` (`changes` replace some of its fields), with
        `jit_compile` resolved to True or False as training resolves it."""
        from keras_damped.training.loop import resolve_jit_compile

        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(Budget)}
        if "jit_compile" not in changes:
            changes["jit_compile"] = resolve_jit_compile(jit_setting(self.jit_compile))
        return Budget(**{**fields, **changes})

    def attack_specs(self):
        """What the report records of each pixel-protocol attack and its
        stages (`registry.attack_specs`), with this config's budget."""
        from keras_damped.robustness.registry import attack_specs

        return attack_specs(self.pixel_attacks(), self.budget())

    def to_dict(self):
        """The settings as JSON-ready values (arrays as "arrays")."""
        data = dataclasses.asdict(dataclasses.replace(self, dataset=None))
        data["dataset"] = self.dataset if isinstance(self.dataset, str) else "arrays"
        return data

    @classmethod
    def from_dict(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def jit_setting(value):
    """`jit_compile` as one of JIT_CHOICES (True and False read as "on" and
    "off"); anything else is refused."""
    if value is True or value is False:
        return "on" if value else "off"
    return choice("jit_compile", value, JIT_CHOICES)


def _as_list(value):
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return [value]
    return list(value)
