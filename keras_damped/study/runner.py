"""`run_study`: train every model with every seed, evaluate each run, compare.

The study composes what exists: each run is an ordinary `train()` run
folder under `OUT/runs/<model>/seed<k>/`, each evaluation an ordinary
`evaluate()` report in that folder's `eval/`, and only the statistics and
the multi-run outputs (`study.json`, `study.md`, `plots/`, `tb/`) are new.
"""

import json
import logging
import os
import shutil
import time

from keras_damped.study.config import StudyConfig

logger = logging.getLogger("keras_damped")
CONFIG_FILE = "study_config.json"


class StudyExistsError(ValueError):
    """OUT holds a study with other settings; nothing was changed."""


def _check_out(config, overwrite):
    """Refuses an OUT that holds another study (before anything is written)."""
    path = os.path.join(config.out, CONFIG_FILE)
    if not os.path.isdir(config.out) or not os.listdir(config.out):
        return
    if overwrite:
        shutil.rmtree(config.out)
        return
    if not os.path.isfile(path):
        raise StudyExistsError(
            f"{config.out} exists and is not a study folder; nothing was "
            "changed. Choose another --out, or pass --overwrite to replace it."
        )
    stored = StudyConfig.from_json(path).to_dict()
    wanted = config.to_dict()
    changed = {k: (stored.get(k), v) for k, v in wanted.items() if stored.get(k) != v}
    if changed:
        raise StudyExistsError(
            f"{config.out} holds a study with other settings {changed} "
            "(stored, requested); nothing was changed. Re-run with the same "
            "settings to resume it, choose another --out, or pass --overwrite."
        )


class _Clock:
    """Elapsed time and an estimate of what remains, from the mean so far."""

    def __init__(self, total):
        self.start = time.monotonic()
        self.total = total
        self.done = 0
        self.timed = []

    def finish(self, seconds=None):
        self.done += 1
        if seconds is not None:
            self.timed.append(seconds)

    def remaining(self):
        if not self.timed:
            return "unknown"
        left = (self.total - self.done) * sum(self.timed) / len(self.timed)
        return _duration(left)


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _train_runs(config, runs, log):
    import keras

    from keras_damped.training import ProgressLogger
    from keras_damped.training import train

    clock = _Clock(len(runs))
    for model, seed in runs:
        train_config = config.train_config(model, seed)
        label = f"{model} seed {seed}"
        if os.path.isfile(os.path.join(train_config.run_dir, "model.keras")):
            clock.finish()
            log(f"[train {clock.done}/{clock.total}] {label}: finished earlier, reused")
            continue
        resume = os.path.isfile(os.path.join(train_config.run_dir, "config.json"))
        log(
            f"[train {clock.done + 1}/{clock.total}] {label}: "
            + ("resuming" if resume else "starting")
        )
        started = time.monotonic()
        keras.backend.clear_session()
        result = train(
            train_config, resume=resume, callbacks=[ProgressLogger(label, 30.0)]
        )
        seconds = time.monotonic() - started
        clock.finish(seconds)
        accuracy = result.history.get("val_accuracy", [float("nan")])[-1]
        log(
            f"[train {clock.done}/{clock.total}] {label}: done in "
            f"{_duration(seconds)}, validation accuracy {accuracy:.4f}; "
            f"{_duration(time.monotonic() - clock.start)} elapsed, about "
            f"{clock.remaining()} of training left"
        )


def _cached_report(eval_dir, settings):
    path = os.path.join(eval_dir, "report.json")
    stamp = os.path.join(eval_dir, "study_settings.json")
    if not (os.path.isfile(path) and os.path.isfile(stamp)):
        return None
    with open(stamp) as f:
        if json.load(f) != settings:
            return None
    from keras_damped.robustness import RobustnessReport

    return RobustnessReport.from_json(path)


def _evaluate_runs(config, runs, log):
    import keras

    from keras_damped.robustness import evaluate
    from keras_damped.robustness import load_model_file

    settings = config.evaluation_settings()
    clock = _Clock(len(runs))
    reports = {}
    for model, seed in runs:
        folder = config.train_config(model, seed).run_dir
        eval_dir = os.path.join(folder, "eval")
        label = f"{model} seed {seed}"
        report = _cached_report(eval_dir, settings)
        if report is not None:
            clock.finish()
            log(f"[evaluate {clock.done}/{clock.total}] {label}: reused")
            reports[(model, seed)] = report
            continue
        started = time.monotonic()
        last = [started]

        def progress(done, total, label=label, started=started, last=last):
            now = time.monotonic()
            if now - last[0] >= 30.0:
                last[0] = now
                log(
                    f"  {label}: evaluation {done}/{total} ({_duration(now - started)})"
                )

        keras.backend.clear_session()
        report = evaluate(
            {label: load_model_file(os.path.join(folder, "model.keras"))},
            config.dataset,
            attacks=config.attacks,
            eps=[e / 255 for e in config.eps],
            noises=config.noises,
            severities=config.severities,
            limit=config.limit,
            batch_size=config.eval_batch_size,
            seed=config.eval_seed,
            noise_source=config.noise_source,
            data_dir=config.data_dir,
            progress=progress,
            noise_levels=config.noise_levels,
        )
        report.save(eval_dir, overwrite=True)
        with open(os.path.join(eval_dir, "study_settings.json"), "w") as f:
            json.dump(settings, f, indent=2)
        seconds = time.monotonic() - started
        clock.finish(seconds)
        log(
            f"[evaluate {clock.done}/{clock.total}] {label}: clean "
            f"{100 * report.data['models'][label]['clean']:.1f}%, done in "
            f"{_duration(seconds)}; about {clock.remaining()} of evaluation left"
        )
        reports[(model, seed)] = report
    return reports


def run_study(config, overwrite=False, log=None):
    """Trains and evaluates every model x seed, then writes the comparison.

    Re-running the same study resumes it: finished runs and evaluations are
    reused, an interrupted run continues from its last checkpoint. Another
    study's folder is refused unless `overwrite`.

    Args:
        config: a `StudyConfig`.
        overwrite: replace whatever OUT holds.
        log: a function taking one line of progress (default: the
            `keras_damped` logger).

    Returns:
        The study result dict (what `study.json` holds).
    """
    from keras_damped.study.outputs import write_outputs
    from keras_damped.study.stats import summarize_study

    log = log or logger.info
    config.validate()
    _check_out(config, overwrite)
    os.makedirs(config.out, exist_ok=True)
    with open(os.path.join(config.out, CONFIG_FILE), "w") as f:
        json.dump(config.to_dict(), f, indent=2)
    # Seed-major: an interrupted study has whole seeds of every model.
    runs = [(m, s) for s in config.seeds for m in config.models]
    started = time.monotonic()
    log(
        f"Study {config.out}: {len(config.models)} models x {len(config.seeds)} "
        f"seeds = {len(runs)} runs"
    )
    _train_runs(config, runs, log)
    reports = _evaluate_runs(config, runs, log)
    result = summarize_study(config, reports)
    write_outputs(config, result)
    log(
        f"Study finished in {_duration(time.monotonic() - started)}: "
        f"{config.out}/study.md, study.json, plots/, tb/"
    )
    return result
