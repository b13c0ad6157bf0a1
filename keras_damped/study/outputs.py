"""A study's files: study.json, study.md, plots/*.png and tb/ (HParams)."""

import json
import math
import os

from keras_damped.robustness.report import attack_keys
from keras_damped.robustness.report import attack_specs
from keras_damped.study.stats import attack_examples

PLOT_COLUMNS_LIMIT = 40


def _pct(value, digits=1):
    return "-" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}"


def _interval(s, digits=1):
    """`mean ± half` in percent points, or just the mean for one seed."""
    if math.isnan(s["half_width"]):
        return _pct(s["mean"], digits)
    return f"{_pct(s['mean'], digits)} ± {_pct(s['half_width'], digits)}"


def severity_columns(result):
    """The per-severity noise columns, in table order."""
    evaluation = result["evaluation"]
    per_severity = {
        f"{noise} s{severity}"
        for noise in evaluation["noises"]
        for severity in evaluation["severities"]
    }
    return [c for c in result["columns"] if c in per_severity]


def main_columns(result):
    """The columns of the main table: per-severity noise columns and those
    of the authors' protocols go elsewhere."""
    elsewhere = set(severity_columns(result)) | set(result["protocol_columns"])
    return [c for c in result["columns"] if c not in elsewhere]


def _table(header, rows):
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def findings(result, columns=None, list_neutral=True):
    """Plain sentences: where a paired interval excludes zero and where not
    (in `columns`, the main table's by default; with `list_neutral` false,
    the columns whose interval includes zero are counted, not named)."""
    base = result["config"]["baseline"]
    columns = main_columns(result) if columns is None else columns
    lines = []
    for model, diffs in result["differences"].items():
        higher = [c for c in columns if diffs[c]["verdict"] == "higher"]
        lower = [c for c in columns if diffs[c]["verdict"] == "lower"]
        neutral = [c for c in columns if diffs[c]["verdict"] == "no difference shown"]
        text = (
            f"- **{model} vs {base}** ({len(diffs['clean']['seeds'])} paired seeds): "
        )
        parts = []
        if higher:
            parts.append(
                "higher, interval excludes zero: "
                + ", ".join(f"{c} ({_signed(diffs[c])})" for c in higher)
            )
        if lower:
            parts.append(
                "lower, interval excludes zero: "
                + ", ".join(f"{c} ({_signed(diffs[c])})" for c in lower)
            )
        if neutral and list_neutral:
            parts.append("interval includes zero: " + ", ".join(neutral))
        elif neutral:
            others = "the other " if higher or lower else ""
            parts.append(f"interval includes zero in {others}{len(neutral)} column(s)")
        lines.append(text + "; ".join(parts) + "." + _holm_sentence(diffs, columns))
    return lines


def _holm_sentence(diffs, columns):
    """What survives Holm's adjustment over the `columns` (one family)."""
    adjusted = {c: diffs[c].get("p_holm") for c in columns}
    adjusted = {c: p for c, p in adjusted.items() if p is not None and p == p}
    if not adjusted:
        return ""
    kept = [c for c, p in adjusted.items() if p < 0.05]
    smallest = min(adjusted, key=adjusted.get)
    text = f" After Holm's adjustment over these {len(adjusted)} columns, "
    if kept:
        return (
            text
            + f"{len(kept)} {'stays' if len(kept) == 1 else 'stay'} below 0.05: "
            + ", ".join(f"{c} (p = {adjusted[c]:.3f})" for c in kept)
            + "."
        )
    text += (
        f"none stays below 0.05 (smallest adjusted p = {adjusted[smallest]:.2f}, "
        f"{smallest})"
    )
    resolved = [c for c in adjusted if diffs[c].get("verdict") in ("higher", "lower")]
    if not resolved:
        return text + "."
    which = (
        "the interval that excludes zero does"
        if len(resolved) == 1
        else f"the {len(resolved)} intervals that exclude zero do"
    )
    return f"{text}: {which} not survive the correction for {len(adjusted)} columns."


def _signed(s):
    """`+1.2 [-0.3, +2.7]` in points; the mean alone without an interval."""
    if math.isnan(s["mean"]):
        return "-"
    if math.isnan(s["half_width"]):
        return f"{100 * s['mean']:+.1f}"
    return f"{100 * s['mean']:+.1f} [{100 * s['low']:+.1f}, {100 * s['high']:+.1f}]"


def _lambda(value):
    if value is None or math.isnan(value):
        return "-"
    return "0" if value == 0 else f"{value:.3f}"


def _resolution_lines(result, columns, conf, title="## Resolution"):
    """Per column: the paired half-width (what this study can resolve) and
    the seeds a half-width of 1, 2 or 5 points would need."""
    from keras_damped.study.stats import RESOLUTION_TARGETS
    from keras_damped.study.stats import points
    from keras_damped.study.stats import power_at_half_width

    targets = [points(h) for h in RESOLUTION_TARGETS]
    seeds = sorted({d[c]["n"] for d in result["differences"].values() for c in columns})
    power = " and ".join(
        f"{power_at_half_width(n, conf / 100):.2f} at {n} seeds" for n in seeds
    )
    lines = [
        "",
        title,
        "",
        f"The half-width of each paired {conf}% interval is the smallest "
        "difference this study can tell from zero (never below one test "
        "example's worth): a true difference of that size is detected only "
        f"about half the time (the power of a paired t-test there is {power}). "
        "`80% power` is the true difference detected 4 times in 5 "
        "(noncentral t at the same spread). The seeds columns say how many "
        "seeds (Student t, at this column's spread of the paired differences) "
        f"a half-width of {', '.join(targets)} points would need.",
        "",
    ]
    rows = []
    for model, diffs in result["differences"].items():
        for c in columns:
            d = diffs[c]
            need = d.get("seeds_needed", {})
            rows.append(
                [
                    model,
                    c,
                    _pct(d["half_width"]),
                    _pct(d.get("detectable_80")),
                    _pct(d["sd"]),
                ]
                + [str(need.get(h) or "-") for h in targets]
            )
    header = ["model", "column", "half-width (power ~0.5)", "80% power"]
    header += ["sd of differences"] + [f"seeds for ±{h}" for h in targets]
    return lines + _table(header, rows)


def to_markdown(result):
    """study.md: every table of the study, each section a helper below."""
    columns = main_columns(result)
    conf = int(round(100 * result["confidence"]))
    lines = _header_lines(result, conf)
    lines += _accuracy_lines(result, columns, conf)
    lines += _relative_lines(result, [c for c in columns if c != "clean"])
    lines += _protocol_lines(result, conf)
    lines += _severity_lines(result)
    lines += _lambda_lines(result["models"])
    lines += _depth_lines(result.get("depth_comparison"), conf)
    lines += _provenance_lines(result["models"])
    lines += ["", "## Per run", ""]
    rows = []
    for m, d in result["models"].items():
        for seed, cols in d["runs"].items():
            rows.append([m, seed] + [_pct(cols[c]) for c in columns])
    lines += _table(["model", "seed"] + columns, rows)
    return "\n".join(lines) + "\n"


def _header_lines(result, conf):
    config = result["config"]
    evaluation = result["evaluation"]
    seeds = ",".join(str(s) for s in config["seeds"])
    return [
        f"Study: {', '.join(config['models'])} x seeds {seeds} on "
        f"`{config['train']['dataset']}`; {config['train']['epochs']} epochs on "
        f"{config['train']['train_limit'] or 'all'} training examples; evaluated on "
        f"{evaluation['examples']} test examples, attacks on the first "
        f"{attack_examples(evaluation)} ({evaluation['noise_source']}). "
        f"Accuracy in %, mean ± half-width of the {conf}% Student-t interval "
        "over seeds. Attacks in pixel space [0, 1], eps in units of 1/255; "
        f"iterative attacks {evaluation['steps']} steps. `worst e` counts an "
        "example as robust only if it survives every L-infinity attack at eps "
        "e. Noise columns are the mean over the severities; `c=` columns use an "
        "explicit noise parameter.",
    ]


def _difference_rows(differences, columns):
    """One row per model: its signed differences, bold where resolved."""
    return [
        [model] + [_bold_if_resolved(diffs[c]) for c in columns]
        for model, diffs in differences.items()
    ]


def _accuracy_lines(result, columns, conf):
    """The accuracy table, the paired differences, in words, and the
    resolution."""
    lines = ["", "## Accuracy", ""]
    rows = [
        [m] + [_interval(d["summary"][c]) for c in columns]
        for m, d in result["models"].items()
    ]
    lines += _table(["model"] + columns, rows)
    baseline = result["config"]["baseline"]
    lines += [
        "",
        f"## Paired differences against {baseline} (points, seed-matched)",
        "",
        f"Mean difference and its {conf}% interval; **bold** where the interval "
        "excludes zero.",
        "",
    ]
    rows = _difference_rows(result["differences"], columns)
    if rows:
        lines += _table(["model"] + columns, rows)
        lines += ["", "In words:", ""] + findings(result)
        lines += _resolution_lines(result, columns, conf)
    return lines


def _relative_lines(result, columns):
    """Accuracy over clean accuracy on the same images, and its differences."""
    evaluation = result["evaluation"]
    lines = [
        "",
        "## Relative to clean accuracy (robust / clean on the same images, %)",
        "",
        "Noise columns divide by the clean accuracy on all "
        f"{evaluation['examples']} test examples; attack and `worst` columns by "
        f"the clean accuracy on the {attack_examples(evaluation)} attacked ones.",
        "",
    ]
    rows = [
        [m] + [_interval(d["relative"][c]) for c in columns]
        for m, d in result["models"].items()
    ]
    lines += _table(["model"] + columns, rows)
    relative = {m: d["_relative"] for m, d in result["differences"].items()}
    rows = _difference_rows(relative, columns)
    if rows:
        lines += [
            "",
            f"Paired differences of the relative accuracy against "
            f"{result['config']['baseline']} (points):",
            "",
        ]
        lines += _table(["model"] + columns, rows)
    return lines


def _severity_lines(result):
    columns = severity_columns(result)
    if not columns:
        return []
    rows = [
        [m] + [_interval(d["summary"][c]) for c in columns]
        for m, d in result["models"].items()
    ]
    return ["", "## Noise by severity", ""] + _table(["model"] + columns, rows)


def _lambda_lines(models):
    """The learned lambda of every damped block, per seed and the mean."""
    damped = {m: d["lambdas"] for m, d in models.items() if d["lambdas"]}
    if not damped:
        return []
    lines = [
        "",
        "## Learned lambda per damped block",
        "",
        "Per seed and the mean over seeds; relu clamps lambda at 0 "
        "(lambda-In-ResNet) and 1 - lambda at 0 (In-ResNet), so exact zeros "
        "are printed as 0.",
        "",
    ]
    # Models of different depths: every block of any of them, "-" where a
    # model has none.
    blocks = list(dict.fromkeys(b for lams in damped.values() for b in lams))
    rows = []
    for m, lams in damped.items():
        seeds = sorted({s for b in lams.values() for s in b["seeds"]}, key=int)
        for seed in seeds:
            rows.append(
                [m, seed]
                + [_lambda(lams.get(b, {}).get("seeds", {}).get(seed)) for b in blocks]
            )
        rows.append(
            [m, "mean"] + [_lambda(lams.get(b, {}).get("mean")) for b in blocks]
        )
    return lines + _table(["model", "seed"] + blocks, rows)


def _depth_lines(table, conf):
    """The comparison with a study at another depth (`compare_with`): one
    row per column, for each damped kind its difference against the
    baseline in each study and the change between them."""
    if not table:
        return []
    lines = [
        "",
        "## Does depth change the answer?",
        "",
        f"This study (`{table['deep']}`) against `{table['shallow']}`. Per "
        "column, each damped kind's paired difference against the baseline "
        f"in each study (points, {conf}% t interval, seeds paired within a "
        "study) and the change between them (this study's minus the "
        f"other's, Welch {conf}% interval: the two studies' models are "
        "independent); **bold** where an interval excludes zero.",
        "",
    ]
    base = {side: table["baseline"][side] for side in ("shallow", "deep")}
    header = ["column"]
    for kind in table["rows"]:
        names = table["models"][kind]
        header += [
            f"{names['shallow']} - {base['shallow']}",
            f"{names['deep']} - {base['deep']}",
            f"{kind}: change with depth",
        ]
    rows = [
        [column]
        + [
            _bold_if_resolved(by_column[column][side])
            for by_column in table["rows"].values()
            for side in ("shallow", "deep", "contrast")
        ]
        for column in table["columns"]
    ]
    lines += _table(header, rows)
    lines += [""] + _depth_summary(table)
    lines += ["", "Clean accuracy (%):", ""]
    rows = [
        [kind] + [_interval(sides[s]) for s in ("shallow", "deep")]
        for kind, sides in table["clean"].items()
    ]
    lines += _table(["kind", "shallow study", "deep study"], rows)
    for kind, sides in table["lambdas"].items():
        names = table["models"][kind]
        for side in ("shallow", "deep"):
            lines += [
                "",
                f"Learned lambda of {names[side]} per block, over seeds:",
                "",
            ]
            rows = [
                [block, _lambda(v["mean"]), _lambda(v["sd"])]
                + [f"{_lambda(v['min'])}-{_lambda(v['max'])}"]
                for block, v in sides[side].items()
            ]
            lines += _table(["block", "mean", "sd", "range"], rows)
    return lines


def _depth_summary(table):
    """Per damped kind, which main columns' change with depth excludes zero
    and what survives Holm's adjustment over them."""
    main = table["families"]["pixel"]
    lines = []
    for kind, by_column in table["rows"].items():
        contrasts = {c: by_column[c]["contrast"] for c in main}
        moved = {
            side: [c for c in main if contrasts[c]["verdict"] == side]
            for side in ("higher", "lower")
        }
        names = table["models"][kind]
        parts = [
            f"{verb} from {names['shallow']} to {names['deep']} in "
            + ", ".join(f"{c} ({_signed(contrasts[c])})" for c in moved[side])
            for side, verb in (("higher", "grows"), ("lower", "shrinks"))
            if moved[side]
        ]
        text = (
            f"- **{kind}, change with depth**: the interval excludes zero in "
            f"{len(moved['higher']) + len(moved['lower'])} of the {len(main)} "
            "main columns"
        )
        text += (": the difference " + "; ".join(parts) + ".") if parts else "."
        lines.append(text + _holm_sentence(contrasts, main))
    return lines


def _bold_if_resolved(summary):
    cell = _signed(summary)
    return f"**{cell}**" if summary["verdict"] != "no difference shown" else cell


def _provenance_lines(models):
    """Where each run was trained (each session's CPU, oldest first), how
    often it was resumed, and where and how long it was evaluated."""
    rows = []
    for m, d in models.items():
        for seed, p in d.get("provenance", {}).items():
            cpus = [s["cpu"] or "?" for s in p["training"]]
            trained = " -> ".join(c for i, c in enumerate(cpus) if c not in cpus[:i])
            evaluated = p["evaluated_on"] or "-"
            resumed = p.get("evaluation_resumed")
            if resumed:
                machines = ", ".join(resumed["machines"])
                evaluated += (
                    f" (resumed: {resumed['batches_reused']} attack batches "
                    f"from {machines})"
                )
            timing = _evaluation_time(p.get("evaluation_seconds"), resumed)
            rows.append([m, seed, trained or "-", str(p["resumed"]), evaluated, timing])
    if not rows:
        return []
    lines = [
        "",
        "## Where each run ran",
        "",
        "A resumed evaluation's time adds to its last session's the seconds "
        "its reused attack batches took in the sessions before (not the "
        "clean and noise passes those also ran, which were redone).",
        "",
    ]
    header = ["model", "seed", "trained on", "training resumed", "evaluated on"]
    return lines + _table(header + ["evaluation time"], rows)


def _evaluation_time(seconds, resumed):
    """A run's evaluation time for study.md: over every session where the
    report records the reused batches' seconds, else its last session's."""
    if not seconds:
        return "-"
    wall, cpu = seconds["wall"], seconds["cpu"]
    if not resumed:
        return f"{wall / 60:.0f} min wall, {cpu / 60:.0f} min CPU"
    earlier = resumed.get("seconds")
    if earlier is None:  # a report from before the sessions were recorded
        return f"{wall / 60:.0f} min wall, {cpu / 60:.0f} min CPU in its last session"
    sessions = resumed["sessions"] + 1
    text = f"{(wall + earlier['wall']) / 60:.0f} min wall"
    if earlier["cpu"] is None:
        return f"{text} over {sessions} sessions, {cpu / 60:.0f} min CPU in the last"
    return f"{text}, {(cpu + earlier['cpu']) / 60:.0f} min CPU over {sessions} sessions"


def _protocol_lines(result, conf):
    """The authors'-protocol columns: per protocol, the accuracy and the
    paired differences, then their resolution (empty without a protocol)."""
    from keras_damped.robustness.report import PROTOCOL_NOTES
    from keras_damped.study.stats import authors_protocols
    from keras_damped.study.stats import protocol_column

    evaluation = result["evaluation"]
    protocols = authors_protocols(evaluation)
    if not result["protocol_columns"]:
        return []
    lines = [
        "",
        "## The authors' protocols",
        "",
        "The same runs evaluated as the authors' code evaluates "
        "(`keras_damped.robustness.protocols`). `eps 0` is the accuracy after "
        "the protocol's input clamp alone, on the images its attacks ran on "
        f"(the first {attack_examples(evaluation)} test examples); attacks "
        "with eps as the protocol states it (units of 1/255), "
        f"{evaluation['protocol_steps']} steps for IFGSM and PGD; noise columns "
        "are the mean over the severities, each noise file standardised by its "
        f"own statistics. Mean ± half-width of the {conf}% Student-t interval; "
        f"paired differences against {result['config']['baseline']} in points, "
        "**bold** where the interval excludes zero.",
        "",
    ]
    lines += [f"- `{p}`: {PROTOCOL_NOTES[p]}." for p in protocols]
    for p in protocols:
        prefix = protocol_column(p, "")
        columns = [c for c in result["protocol_columns"] if c.startswith(prefix)]
        names = [c[len(prefix) :] for c in columns]
        lines += ["", f"### {p}", ""]
        rows = [
            [m] + [_interval(d["summary"][c]) for c in columns]
            for m, d in result["models"].items()
        ]
        lines += _table(["model"] + names, rows)
        rows = []
        for model, diffs in result["differences"].items():
            row = [f"{model} - {result['config']['baseline']}"]
            for c in columns:
                cell = _signed(diffs[c])
                bold = diffs[c]["verdict"] != "no difference shown"
                row.append(f"**{cell}**" if bold else cell)
            rows.append(row)
        if rows:
            lines += [""] + _table(["difference"] + names, rows)
    if result["differences"]:
        lines += ["", "In words:", ""]
        lines += findings(result, result["protocol_columns"], list_neutral=False)
        lines += _resolution_lines(
            result,
            result["protocol_columns"],
            conf,
            title="### Resolution under the authors' protocols",
        )
    return lines


def model_colours(models):
    """One colour per model, the same in every plot of a study."""
    return {m: f"C{i}" for i, m in enumerate(models)}


def model_styles(models, baseline):
    """Line style, marker and drawing order per model: each model its own,
    and the baseline drawn last, on top, so lines that coincide never hide
    it."""
    markers = ("s", "o", "^", "D", "v", "P")
    lines = ("--", "-", "-.", ":")
    return {
        m: {
            "marker": markers[i % len(markers)],
            "linestyle": lines[i % len(lines)],
            "markersize": 7 if m == baseline else 5,
            "zorder": 10 if m == baseline else 3 + i,
        }
        for i, m in enumerate(models)
    }


class _Figures:
    """What a study's figures share: the folder, one colour and one style per
    model, the seeds and confidence, and the paths written."""

    def __init__(self, result, out_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        config = result["config"]
        self.plt = plt
        self.out_dir = out_dir
        self.models = result["models"]
        self.colour = model_colours(config["models"])
        self.style = model_styles(config["models"], config["baseline"])
        self.seeds = len(next(iter(self.models.values()))["runs"])
        self.conf = int(100 * result["confidence"])
        self.paths = []

    def band(self, ax, xs, cols, summaries, label):
        """A model's mean over `cols` at `xs`, its interval shaded."""
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        xs = [xs[i] for i in order]
        cols = [cols[i] for i in order]
        mean = [100 * summaries[c]["mean"] for c in cols]
        low = [max(0.0, 100 * summaries[c]["low"]) for c in cols]
        high = [min(100.0, 100 * summaries[c]["high"]) for c in cols]
        colour = self.colour[label]
        ax.plot(xs, mean, label=label, color=colour, **self.style[label])
        if not any(math.isnan(v) for v in low):
            ax.fill_between(xs, low, high, alpha=0.15, color=colour, linewidth=0)

    def save(self, fig, name, note):
        fig.suptitle(note, fontsize=9)
        self.paths.append(os.path.join(self.out_dir, name))
        fig.savefig(self.paths[-1], dpi=100)
        self.plt.close(fig)

    def panels(self, name, items, xlabel):
        """One panel per (title, xs, columns), a band per model in each."""
        fig, axes = self.plt.subplots(
            1,
            len(items),
            figsize=(4.2 * len(items), 3.6),
            squeeze=False,
            layout="constrained",
        )
        for ax, (title, xs, cols) in zip(axes[0], items):
            for m, d in self.models.items():
                self.band(ax, xs, cols, d["summary"], m)
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("accuracy (%)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        note = (
            f"mean over {self.seeds} seeds; shaded bands: {self.conf}% "
            "Student-t intervals"
        )
        self.save(fig, name, note)


def plots(result, out_dir):
    """accuracy_vs_eps.png, accuracy_vs_severity.png, noise_levels.png,
    differences.png (a forest plot) and lambdas.png; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    figures = _Figures(result, out_dir)
    evaluation = result["evaluation"]
    if evaluation["attacks"]:
        items = _eps_panels(result)
        figures.panels("accuracy_vs_eps.png", items, "eps (x 1/255, 0: clean)")
    severities = evaluation["severities"]
    if evaluation["noises"]:
        items = [
            (
                f"{noise} noise",
                [0] + list(severities),
                ["clean"] + [f"{noise} s{s}" for s in severities],
            )
            for noise in evaluation["noises"]
        ]
        figures.panels("accuracy_vs_severity.png", items, "severity (0: clean)")
    if evaluation.get("noise_levels"):
        figures.panels(
            "noise_levels.png",
            _level_panels(evaluation),
            "noise parameter c (sigma; 0: clean)",
        )
    if result["differences"]:
        _differences_plot(figures, result)
    lambdas = {m: d["lambdas"] for m, d in result["models"].items() if d["lambdas"]}
    if lambdas:
        _lambdas_plot(figures, lambdas)
    return figures.paths


def _eps_panels(result):
    """(title, eps, columns) per attack and for the worst case."""
    evaluation = result["evaluation"]
    worst = [e for e in evaluation["eps_255"] if f"worst {e}" in result["columns"]]
    per_attack = [(a, attack_keys(evaluation, a)) for a in evaluation["attacks"]]
    specs = attack_specs(evaluation)
    return [
        (
            "worst case over attacks" if a == "worst" else specs[a]["label"],
            [0] + [float(e) for e in keys],
            ["clean"] + [f"{a} {e}" for e in keys],
        )
        for a, keys in per_attack + [("worst", worst)]
        if keys
    ]


def _level_panels(evaluation):
    """(title, noise parameters, columns) per noise with explicit levels;
    Gaussian's severities join its sweep (they are points of it)."""
    from keras_damped.data.corruptions import NOISES

    severities = evaluation["severities"]
    items = []
    for noise, values in evaluation["noise_levels"].items():
        xs = [float(v) for v in values]
        cols = [f"{noise} c={v}" for v in values]
        if noise in evaluation["noises"] and noise == "gaussian":
            xs += [NOISES[noise][s - 1] for s in severities]
            cols += [f"{noise} s{s}" for s in severities]
        items.append(
            (f"{noise} noise: severities and beyond", [0.0] + xs, ["clean"] + cols)
        )
    return items


def _differences_plot(figures, result):
    """differences.png: each model's paired difference per column, with its
    interval, against the baseline."""
    differences = result["differences"]
    columns = main_columns(result)[:PLOT_COLUMNS_LIMIT]
    fig, ax = figures.plt.subplots(
        figsize=(7, 0.32 * len(columns) * len(differences) + 1.5),
        layout="constrained",
    )
    y = 0
    ticks, labels = [], []
    for model, diffs in differences.items():
        for c in columns:
            s = diffs[c]
            err = 0 if math.isnan(s["half_width"]) else 100 * s["half_width"]
            ax.errorbar(
                100 * s["mean"],
                y,
                xerr=err,
                fmt="o",
                color=figures.colour[model],
                capsize=3,
                label=model if c == columns[0] else None,
            )
            ticks.append(y)
            labels.append(c)
            y -= 1
        y -= 1
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel(
        f"difference to {result['config']['baseline']} (points, "
        f"{figures.conf}% interval)"
    )
    ax.set_ylim(y + 0.5, 1)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, axis="x")
    note = (
        f"paired differences over {figures.seeds} seeds; bars: {figures.conf}% "
        "Student-t intervals"
    )
    figures.save(fig, "differences.png", note)


def _lambdas_plot(figures, lambdas):
    """lambdas.png: the learned lambda per damped block, mean and seeds."""
    fig, ax = figures.plt.subplots(figsize=(7, 3.6), layout="constrained")
    for m, lams in lambdas.items():
        blocks = range(1, len(lams) + 1)
        ax.plot(
            blocks,
            [v["mean"] for v in lams.values()],
            label=f"{m} (mean)",
            color=figures.colour[m],
            **figures.style[m],
        )
        for b, v in zip(blocks, lams.values()):
            per_seed = list(v["seeds"].values())
            ax.scatter([b] * len(per_seed), per_seed, s=10, color=figures.colour[m])
    ax.set_xlabel("damped block (input to output)")
    ax.set_ylabel("learned lambda (dots: seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    note = f"learned lambda: the line is the mean, the dots the {figures.seeds} seeds"
    figures.save(fig, "lambdas.png", note)


def _tag(column):
    return "study/" + "".join(
        ch if ch.isalnum() or ch in "._-=" else "_" for ch in column
    )


def write_tensorboard(result, log_dir):
    """TensorBoard HParams: one session per run with its settings and metrics.

    `log_dir` gets the experiment (hyperparameters and metrics); each run
    becomes a session in `log_dir/<model>/seed<k>` whose metric scalars are
    its study columns. Open `tensorboard --logdir OUT` to see them next to
    the runs' own training curves (OUT/runs/...).
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    config = result["config"]
    columns = main_columns(result)
    hparams = {
        "model": hp.HParam("model", hp.Discrete(config["models"])),
        "seed": hp.HParam("seed", hp.Discrete([int(s) for s in config["seeds"]])),
        "damping": hp.HParam(
            "damping", hp.Discrete(["resnet", "in", "lambda_in", "cnn"])
        ),
        "epochs": hp.HParam("epochs", hp.IntInterval(1, 100000)),
        "lr": hp.HParam("lr", hp.RealInterval(0.0, 100.0)),
        "weight_decay": hp.HParam("weight_decay", hp.RealInterval(0.0, 1.0)),
        "batch_size": hp.HParam("batch_size", hp.IntInterval(1, 1 << 20)),
    }
    metrics = [hp.Metric(_tag(c), display_name=c) for c in columns]
    with tf.summary.create_file_writer(log_dir).as_default():
        hp.hparams_config(hparams=list(hparams.values()), metrics=metrics)
    for model, data in result["models"].items():
        damping = "resnet"
        for prefix in ("lambda_in", "in", "cnn"):
            if model.startswith(prefix + "_") or model.startswith(prefix):
                damping = prefix
                break
        for seed, cols in data["runs"].items():
            writer = tf.summary.create_file_writer(
                os.path.join(log_dir, model, f"seed{seed}")
            )
            with writer.as_default():
                hp.hparams(
                    {
                        hparams["model"]: model,
                        hparams["seed"]: int(seed),
                        hparams["damping"]: damping,
                        hparams["epochs"]: config["train"]["epochs"],
                        hparams["lr"]: config["train"]["lr"],
                        hparams["weight_decay"]: config["train"]["weight_decay"],
                        hparams["batch_size"]: config["train"]["batch_size"],
                    },
                    trial_id=f"{model}/seed{seed}",
                )
                for c in columns:
                    tf.summary.scalar(_tag(c), cols[c], step=0)
            writer.close()


def landscape_plot(landscape, result, out_dir):
    """plots/landscape_1d.png: loss and accuracy along each run's own
    sign-gradient direction and a shared random one, one colour per model
    (thin lines: the seeds; thick: their mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colour = model_colours(result["config"]["models"])
    style = model_styles(result["config"]["models"], result["config"]["baseline"])
    fig, axes = plt.subplots(
        2, 2, figsize=(10, 6.8), squeeze=False, layout="constrained"
    )
    for column, kind in enumerate(("sign_gradient", "random")):
        curves = landscape["landscape_1d"][kind]
        t = 255 * np.asarray(curves["t"])
        for row, metric in enumerate(("loss", "accuracy")):
            ax = axes[row][column]
            for model in result["config"]["models"]:
                runs = [
                    np.asarray(v[metric])
                    for name, v in curves["models"].items()
                    if name.rsplit(" (seed", 1)[0] == model
                ]
                if not runs:
                    continue
                scale = 100 if metric == "accuracy" else 1
                for values in runs:
                    ax.plot(t, scale * values, color=colour[model], lw=0.6, alpha=0.4)
                mean = scale * np.mean(runs, axis=0)
                ax.plot(
                    t,
                    mean,
                    color=colour[model],
                    lw=2,
                    label=model,
                    linestyle=style[model]["linestyle"],
                    zorder=style[model]["zorder"],
                )
            ax.set_xlabel(
                "t (x 1/255) along "
                + (
                    "each run's sign gradient"
                    if kind == "sign_gradient"
                    else "a random sign direction"
                )
            )
            ax.set_ylabel("mean loss" if metric == "loss" else "accuracy (%)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    seeds = len(result["config"]["seeds"])
    fig.suptitle(
        f"Input-space landscape, {landscape['settings']['examples']} test images, "
        f"{seeds} seeds per model (thin: each seed, thick: the mean)"
    )
    path = os.path.join(out_dir, "landscape_1d.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(config, result):
    """Writes study.json, study.md, plots/ and tb/ into the study folder.

    Only what changed is rewritten: re-aggregating a study whose runs are
    the same leaves every file as it was (the TensorBoard events, which
    carry their wall time, are rewritten only when the results they hold
    change), so a committed study stays unchanged in git.
    """
    import hashlib
    import shutil
    import tempfile

    out = config.out
    write_if_changed(os.path.join(out, "study.json"), json.dumps(result, indent=2))
    write_if_changed(os.path.join(out, "study.md"), to_markdown(result))
    with tempfile.TemporaryDirectory() as fresh:
        plots(result, fresh)
        landscape = os.path.join(out, "landscape.json")
        if os.path.isfile(landscape):
            with open(landscape) as f:
                landscape_plot(json.load(f), result, fresh)
        _sync_folder(fresh, os.path.join(out, "plots"))
    tb = os.path.join(out, "tb")
    source = json.dumps(
        {
            "config": result["config"],
            "columns": main_columns(result),
            "runs": {m: d["runs"] for m, d in result["models"].items()},
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(source.encode()).hexdigest()
    stamp = os.path.join(tb, "written_from.sha256")
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if f.read().strip() == digest:
                return
    shutil.rmtree(tb, ignore_errors=True)
    write_tensorboard(result, tb)
    with open(stamp, "w") as f:
        f.write(digest + "\n")


def write_if_changed(path, text):
    """Writes `text` to `path` unless the file holds it already."""
    if os.path.isfile(path):
        with open(path) as f:
            if f.read() == text:
                return
    with open(path, "w") as f:
        f.write(text)


def _sync_folder(fresh, target):
    """Makes `target` hold `fresh`'s files, copying only those that differ
    and removing those `fresh` no longer has."""
    import filecmp
    import shutil

    os.makedirs(target, exist_ok=True)
    names = set(os.listdir(fresh))
    for name in names:
        new, old = os.path.join(fresh, name), os.path.join(target, name)
        if not (os.path.isfile(old) and filecmp.cmp(new, old, shallow=False)):
            shutil.copyfile(new, old)
    for name in set(os.listdir(target)) - names:
        os.remove(os.path.join(target, name))
