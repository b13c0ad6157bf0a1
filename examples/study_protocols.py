"""The authors'-protocol columns of a finished study, from its run reports.

`keras-damped study --protocols ...` evaluates every run under each protocol
(each run's eval/report.json, "protocols"), but study.md does not aggregate
those columns yet. This prints them as a Markdown table: the baseline's
mean over seeds, and for every other model its mean and the paired,
seed-matched difference with its 95% Student-t interval (points), with the
study's own statistics (`keras_damped.study.stats`).

    python examples/study_protocols.py docs/results/study-fm-8ep
"""

import argparse
import glob
import json
import os

from keras_damped.study.stats import paired_difference
from keras_damped.study.stats import summarize


def protocol_columns(out):
    """{(protocol, column): {model: {seed: accuracy}}} from OUT/runs/, and
    the number of attacked test images."""
    columns, examples = {}, None
    pattern = os.path.join(out, "runs", "*", "seed*", "eval", "report.json")
    for path in sorted(glob.glob(pattern)):
        parts = path.split(os.sep)
        model, seed = parts[-4], int(parts[-3][len("seed") :])
        with open(path) as f:
            report = json.load(f)
        examples = report["settings"]["attack_examples"]
        entry = next(iter(report["models"].values()))
        for protocol, result in entry.get("protocols", {}).items():
            values = {"eps 0": result["eps0"]}
            for attack, by_eps in result["attacks"].items():
                values.update({f"{attack} {e}": a for e, a in by_eps.items()})
            for column, accuracy in values.items():
                by_model = columns.setdefault((protocol, column), {})
                by_model.setdefault(model, {})[seed] = accuracy
    return columns, examples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the study folder (its --out)")
    args = parser.parse_args()
    with open(os.path.join(args.out, "study_config.json")) as f:
        config = json.load(f)
    baseline = config.get("baseline") or config["models"][0]
    others = [m for m in config["models"] if m != baseline]
    columns, attack_examples = protocol_columns(args.out)
    if not columns:
        raise SystemExit(f"No protocol results under {args.out}/runs/.")
    header = f"| protocol | column | {baseline} |"
    header += "".join(f" {m} | {m} - {baseline} |" for m in others)
    print(header)
    print("|---" * (3 + 2 * len(others)) + "|")
    for (protocol, column), by_model in sorted(columns.items()):
        base = by_model[baseline]
        row = f"| {protocol} | {column} "
        row += f"| {100 * summarize(list(base.values()))['mean']:.1f} |"
        for model in others:
            d = paired_difference(by_model[model], base, floor=1 / attack_examples)
            mean = 100 * summarize(list(by_model[model].values()))["mean"]
            row += (
                f" {mean:.1f} | {100 * d['mean']:+.1f} "
                f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] |"
            )
        print(row)


if __name__ == "__main__":
    main()
