"""`RobustnessReport`: an evaluation as JSON, Markdown, PNG and TensorBoard."""

import io
import json
import os

import numpy as np

from keras_damped._staging import staged_folder

# How a report states each `Budget` field an attack declares it reads.
_BUDGET_TEXT = {
    "steps": "{} steps",
    "step_size": "step min({}/255, eps)",
    "apgd_steps": "APGD {} iterations",
    "target_classes": "{} target classes",
    "square_queries": "Square {} queries",
    "jit_compile": "XLA {}",
}


def eps_key(eps):
    """An eps in pixel units as its label in units of 1/255 ("8", "0.5")."""
    value = round(float(eps) * 255, 6)
    return str(int(value)) if value == int(value) else str(value)


NORM_NAMES = {"linf": "L-infinity", "l2": "L2"}


def report_norm(settings):
    """The threat model of a report's `settings` (reports before L2: linf)."""
    return settings.get("norm", "linf")


def eps_value(key, norm="linf"):
    """An eps label as the number a reader is given: units of 1/255 in
    L-infinity ("8"), the radius itself in L2 ("0.5")."""
    if norm == "linf":
        return key
    return f"{round(float(key) / 255, 6):g}"


def eps_text(key, norm="linf"):
    """An eps label in words: "8/255" (L-infinity), "0.5 (L2)"."""
    if norm == "linf":
        return f"{key}/255"
    return f"{eps_value(key, norm)} (L2)"


def tensorboard_step(key, norm="linf"):
    """An eps label as a TensorBoard step: eps * 255 in L-infinity, eps *
    1000 in L2 (steps are integers)."""
    value = float(key) if norm == "linf" else float(key) / 255 * 1000
    return int(round(value))


def attack_keys(settings, attack):
    """The eps labels (units of 1/255) `attack` ran at in a report's
    `settings` (every attack at every eps unless `attack_eps` said else)."""
    return settings.get("attack_eps_255", {}).get(attack, settings["eps_255"])


def attack_specs(settings):
    """`{attack: spec}` of a report's `settings` (`registry.attack_spec`):
    what the evaluation recorded; for reports written before it recorded
    them, the registered classes' specs with the recorded budget."""
    if "attack_specs" in settings:
        return settings["attack_specs"]
    from keras_damped.robustness.registry import Budget
    from keras_damped.robustness.registry import attack_specs as live_specs

    fields = ("steps", "step_size", "apgd_steps", "target_classes", "square_queries")
    budget = Budget(**{f: settings[f] for f in fields if f in settings})
    return live_specs(settings["attacks"], budget)


def budget_text(spec):
    """An attack's recorded budget in words ("20 steps, step min(2/255,
    eps)"), empty when it reads none."""
    parts = []
    for field, value in spec["budget"].items():
        if field == "step_size" and spec.get("norm") == "l2":
            parts.append("step 2.5 eps / steps")
            continue
        shown = eps_key(value) if field == "step_size" else value
        parts.append(_BUDGET_TEXT.get(field, field + " {}").format(shown))
    return ", ".join(parts)


def pack_mask(mask):
    """A boolean per-example mask as a compact hex string (report.json)."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes().hex()


def unpack_mask(text, count):
    """The inverse of `pack_mask` for `count` examples."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    return bits[:count].astype(bool)


class RobustnessReport:
    """Results of `evaluate`, side by side for several models.

    `data` is a plain dict (what `report.json` holds): `settings`,
    `versions`, and per model `clean`, `noises[noise][severity]`,
    `attacks[attack][eps/255]` accuracies and the `sanity` checks with their
    `flags`. `examples` (not in JSON) holds a few clean and adversarial
    images for the picture grid.
    """

    def __init__(self, data, examples=None):
        self.data = data
        self.examples = examples

    @property
    def models(self):
        return list(self.data["models"])

    def flags(self):
        return {name: m["sanity"]["flags"] for name, m in self.data["models"].items()}

    def to_json(self, path):
        with open(path, "w") as f:
            json.dump(self.data, f, indent=2)

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    def to_markdown(self):
        settings = self.data["settings"]
        models = self.data["models"]
        noises = settings["noises"]
        specs = attack_specs(settings)
        norm = report_norm(settings)
        units = (
            "eps in units of 1/255"
            if norm == "linf"
            else "eps the L2 length of the whole change, in pixel units"
        )
        lines = [
            f"Dataset `{settings['dataset']}`, {settings['examples']} test examples"
            + _attacked(settings)
            + f", seed {settings['seed']}. Accuracy in %. Threat model: "
            f"{NORM_NAMES[norm]}. Attacks in pixel space [0, 1] with the "
            f"normalisation inside the model; {units}."
            + (
                f" Noise: {settings['noise_source']}, mean over severities "
                f"{settings['severities']}."
                if noises
                else ""
            ),
        ]
        budgets = [
            f"{specs[a]['label']}: {budget_text(specs[a])}"
            for a in settings["attacks"]
            if specs[a]["budget"]
        ]
        if budgets:
            lines.append("Budgets: " + "; ".join(budgets) + ".")
        worst = any("worst" in m for m in models.values())
        if worst:
            lines.append(
                f"WORST e: robust only if every {NORM_NAMES[norm]} attack of the "
                "table left the example correctly classified (per-example AND)."
            )
        lines.append("")
        header = ["model", "clean"] + [n for n in noises]
        attack_cols = [
            (a, e) for a in settings["attacks"] for e in attack_keys(settings, a)
        ]
        worst_cols = settings["eps_255"] if worst else []
        header += [
            f"{specs[a]['label']} {eps_value(e, specs[a]['norm'])}"
            for a, e in attack_cols
        ]
        header += [f"WORST {eps_value(e, norm)}" for e in worst_cols]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for name, m in models.items():
            row = [name, _pct(m["clean"])]
            row += [_pct(m["noises"][n]["mean"]) for n in noises]
            row += [_pct(m["attacks"][a].get(e)) for a, e in attack_cols]
            row += [_pct(m.get("worst", {}).get(e)) for e in worst_cols]
            lines.append("| " + " | ".join(row) + " |")
        lines += _stage_lines(models, settings["attacks"], specs)
        lines += _severity_lines(settings, models)
        lines += _protocol_lines(settings, models)
        lines += ["", "Sanity checks:", ""]
        lines += [_sanity_line(settings, name, m) for name, m in models.items()]
        return "\n".join(lines) + "\n"

    def plot(self, out_dir):
        """Writes the PNG figures; returns their paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        os.makedirs(out_dir, exist_ok=True)
        settings = self.data["settings"]
        models = self.data["models"]
        norm = report_norm(settings)
        paths = []
        if settings["attacks"]:
            attacks = list(settings["attacks"])
            if any("worst" in m for m in models.values()):
                attacks.append("worst")
            fig, axes = plt.subplots(
                1, len(attacks), figsize=(4 * len(attacks), 3.2), squeeze=False
            )
            for ax, attack in zip(axes[0], attacks):
                for name, m in models.items():
                    by_eps = m["worst"] if attack == "worst" else m["attacks"][attack]
                    keys = [e for e in settings["eps_255"] if e in by_eps]
                    ys = [100 * by_eps[e] for e in keys]
                    xs = [float(eps_value(e, norm)) for e in keys]
                    ax.plot(xs, ys, marker="o", label=name)
                title = (
                    "worst case over attacks"
                    if attack == "worst"
                    else attack_specs(settings)[attack]["label"]
                )
                _accuracy_axes(
                    ax,
                    title,
                    "L-infinity eps (x 1/255)" if norm == "linf" else "L2 eps",
                )
            paths.append(_save_panels(plt, fig, axes, out_dir, "accuracy_vs_eps"))
        if settings["noises"]:
            noises = settings["noises"]
            fig, axes = plt.subplots(
                1, len(noises), figsize=(4 * len(noises), 3.2), squeeze=False
            )
            sev = [str(s) for s in settings["severities"]]
            for ax, noise in zip(axes[0], noises):
                for name, m in models.items():
                    ax.plot(
                        [int(s) for s in sev],
                        [100 * m["noises"][noise][s] for s in sev],
                        marker="o",
                        label=name,
                    )
                _accuracy_axes(ax, f"{noise} noise", "severity")
            paths.append(_save_panels(plt, fig, axes, out_dir, "accuracy_vs_severity"))
        if self.examples:
            paths.append(os.path.join(out_dir, "adversarial_examples.png"))
            with open(paths[-1], "wb") as f:
                f.write(self.example_grid_png())
        return paths

    def example_grid_png(self):
        """Clean images, then per model the adversarial image and its perturbation
        amplified to the full range (0.5 + delta / (2 eps))."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ex = self.examples
        clean = ex["clean"]
        names = list(ex["adversarial"])
        cols = 1 + 2 * len(names)
        fig, axes = plt.subplots(
            len(clean), cols, figsize=(1.6 * cols, 1.6 * len(clean)), squeeze=False
        )
        eps = max(ex["eps"], 1e-12)
        for row in range(len(clean)):
            panels = [("clean", clean[row])]
            for name in names:
                adv = ex["adversarial"][name][row]
                label = eps_text(eps_key(eps), ex.get("norm", "linf"))
                panels.append((f"{name}\n{ex['attack']} {label}", adv))
                panels.append(
                    (
                        "perturbation",
                        np.clip(0.5 + (adv - clean[row]) / (2 * eps), 0, 1),
                    )
                )
            for col, (title, image) in enumerate(panels):
                ax = axes[row][col]
                ax.imshow(
                    image.squeeze(),
                    cmap="gray" if image.shape[-1] == 1 else None,
                    vmin=0,
                    vmax=1,
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(title, fontsize=6)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        return buffer.getvalue()

    def write_tensorboard(self, log_dir):
        """Scalars per model (attack accuracy at step eps*255, noise at step
        severity), the picture grid and the Markdown table as text."""
        import tensorflow as tf

        settings = self.data["settings"]
        norm = report_norm(settings)
        for name, m in self.data["models"].items():
            writer = tf.summary.create_file_writer(os.path.join(log_dir, _safe(name)))
            with writer.as_default():
                tf.summary.scalar("robustness/clean", m["clean"], step=0)
                for attack, by_eps in m["attacks"].items():
                    for e, acc in by_eps.items():
                        tf.summary.scalar(
                            f"robustness/{attack}", acc, step=tensorboard_step(e, norm)
                        )
                for e, acc in m.get("worst", {}).items():
                    tf.summary.scalar(
                        "robustness/worst_case", acc, step=tensorboard_step(e, norm)
                    )
                for noise, by_sev in m["noises"].items():
                    for s, acc in by_sev.items():
                        if s != "mean":
                            tf.summary.scalar(
                                f"robustness/{noise}_noise", acc, step=int(s)
                            )
                if m["sanity"]["large_eps_pgd"] is not None:
                    tf.summary.scalar(
                        "robustness/large_eps_pgd",
                        m["sanity"]["large_eps_pgd"],
                        step=tensorboard_step(
                            eps_key(_large_radius(settings, m)), norm
                        ),
                    )
            writer.close()
        writer = tf.summary.create_file_writer(os.path.join(log_dir, "report"))
        with writer.as_default():
            tf.summary.text("robustness/table", self.to_markdown(), step=0)
            if self.examples:
                image = tf.image.decode_png(self.example_grid_png(), channels=4)
                tf.summary.image("robustness/adversarial_examples", image[None], step=0)
        writer.close()

    def save(self, out_dir, overwrite=False):
        """Writes report.json, report.md, plots/ and tb/ into `out_dir`.

        Everything is written into a temporary sibling folder first and
        moved into place at the end, so an interrupted save never leaves a
        folder that looks complete.
        """
        with staged_folder(out_dir, overwrite) as staging:
            self.to_json(os.path.join(staging, "report.json"))
            with open(os.path.join(staging, "report.md"), "w") as f:
                f.write(self.to_markdown())
            self.plot(os.path.join(staging, "plots"))
            self.write_tensorboard(os.path.join(staging, "tb"))
        return os.path.abspath(out_dir)


def _sanity_line(settings, name, model):
    """report.md's line of one model's sanity checks."""
    norm = report_norm(settings)
    s = model["sanity"]
    return (
        f"- {name}: adversarial points in the eps-ball "
        f"{'yes' if s['in_ball'] else 'NO'}, in [0, 1] "
        f"{'yes' if s['in_range'] else 'NO'}; "
        + (
            f"PGD at {_large_text(settings, model)}: {_pct(s['large_eps_pgd'])}%; "
            if s["large_eps_pgd"] is not None
            else "no attack; "
        )
        + (
            "Square below the gradient attacks by "
            + ", ".join(
                f"{100 * g:.1f} (eps {eps_value(e, norm)})"
                for e, g in s["square_gain"].items()
            )
            + " points; "
            if s.get("square_gain")
            else ""
        )
        + ("; ".join(s["flags"]) if s["flags"] else "no flags")
        + (
            "; AutoAttack's own checks: "
            + ("; ".join(s["autoattack_flags"]) or "no flags")
            if "autoattack_flags" in s
            else ""
        )
    )


def _large_radius(settings, model):
    """The radius the gradient-masking check ran at (reports before L2
    record only the setting)."""
    return model["sanity"].get("large_eps") or settings["large_eps"]


def _large_text(settings, model):
    """The gradient-masking check's radius in words."""
    norm = report_norm(settings)
    return eps_text(eps_key(_large_radius(settings, model)), norm)


def _accuracy_axes(ax, title, xlabel):
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def _save_panels(plt, fig, axes, out_dir, name):
    """Writes a row of panels (legend on the first) as `name`.png."""
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, f"{name}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _stage_lines(models, attacks, specs):
    """Each sequence (AutoAttack) step by step: the accuracy left after each
    of its stages."""
    lines = []
    for attack in attacks:
        stages = specs[attack]["stages"]
        if not stages or not any(f"{attack}_stages" in m for m in models.values()):
            continue
        labels = [specs[s]["label"] for s in stages]
        header = ["model", "eps", labels[0], *(f"+ {label}" for label in labels[1:])]
        lines += [
            "",
            f"{specs[attack]['label']} step by step (accuracy left after each "
            "attack, each run on what the ones before left):",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        for name, m in models.items():
            for e, by_stage in m.get(f"{attack}_stages", {}).items():
                cells = [_pct(by_stage.get(s)) for s in stages]
                shown = eps_value(e, specs[attack]["norm"])
                lines.append("| " + " | ".join([name, shown, *cells]) + " |")
    return lines


def _severity_lines(settings, models):
    """The noise group by severity."""
    noises = settings["noises"]
    if not noises:
        return []
    sev = [str(s) for s in settings["severities"]]
    head = ["model", "noise"] + sev
    lines = ["", "Noise by severity:", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for name, m in models.items():
        for n in noises:
            cells = [_pct(m["noises"][n][s]) for s in sev]
            lines.append("| " + " | ".join([name, n, *cells]) + " |")
    return lines


PROTOCOL_NOTES = {
    "pixel": "the standard threat model: pixels in [0, 1], eps in pixels",
    "authors-2020-06": "the authors' first release (June 2020, published with "
    "the paper): eps and the 2/255 step in normalised units (a pixel radius of "
    "eps x std), the normalised tensor clamped to [0, 1] after every step (in "
    "pixels, the band [mean, mean + std]: a distortion even at eps = 0), PGD's "
    "ball centred at its random start; noise files standardised by their own "
    "statistics",
    "authors-2020-08": "the authors' August 2020 update: pixel-equivalent eps "
    "and a 1/255 step, the clamp to the image's range, PGD's ball still "
    "centred at its random start (points up to 2 eps away); noise files "
    "standardised by their own statistics",
}


def _protocol_lines(settings, models):
    """The side-by-side table of the protocols (empty without an authors' one)."""
    authors = [p for p in settings.get("protocols", ["pixel"]) if p != "pixel"]
    if not authors:
        return []
    protocols = [p for p in settings["protocols"]]
    lines = ["", "Protocols (the same models under other evaluation code):", ""]
    lines += [f"- `{p}`: {PROTOCOL_NOTES[p]}." for p in protocols]
    first = next(iter(settings["pixel_radius_255"][authors[0]].values()))
    for p in authors:
        radii = next(iter(settings["pixel_radius_255"][p].values()))
        lines.append(
            f"- pixel radius of each stated eps under `{p}` (units of 1/255, per "
            "channel): " + ", ".join(f"{e}: {radii[e]}" for e in first)
        )
    lines.append(
        "- eps 0: the clean images after the protocol's clamp alone (no attack); "
        f"{settings['protocol_steps']} steps for IFGSM and PGD."
    )
    cols = [
        (a, e)
        for a in settings["protocol_attacks"]
        for e in settings["protocol_eps_255"]
    ]
    noises = settings["noises"]
    eps = settings["protocol_eps_255"]
    head = ["model", "protocol", f"pixel radius of {', '.join(eps)}", "eps 0"]
    head += [f"{a.upper()} {e}" for a, e in cols] + noises
    lines += [
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for name, m in models.items():
        for p in protocols:
            if p == "pixel":
                scores = {
                    "eps0": m["clean"],
                    "attacks": m["attacks"],
                    "noises": m["noises"],
                }
            else:
                scores = m["protocols"][p]
            if p == "pixel":
                radii = ", ".join(eps)
            else:
                per_eps = settings["pixel_radius_255"][p][name]
                radii = ", ".join(_radius(per_eps[e]) for e in eps)
            row = [name, p, radii, _pct(scores["eps0"])]
            row += [_pct(scores["attacks"].get(a, {}).get(e)) for a, e in cols]
            row += [_pct(scores["noises"].get(n, {}).get("mean")) for n in noises]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def _attacked(settings):
    attacked = settings.get("attack_examples", settings["examples"])
    if attacked == settings["examples"]:
        return ""
    return f" (attacks on the first {attacked})"


def _radius(per_channel):
    """One radius, or the per-channel ones in brackets when they differ."""
    values = [f"{r:.2f}".rstrip("0").rstrip(".") for r in per_channel]
    return values[0] if len(set(values)) == 1 else "[" + " ".join(values) + "]"


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}"


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
