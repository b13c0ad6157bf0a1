"""`run_study`: train every model with every seed, evaluate each run, compare.

The study composes what exists: each run is an ordinary `train()` run
folder under `OUT/runs/<model>/seed<k>/`, each evaluation an ordinary
`evaluate()` report in that folder's `eval/`, and only the statistics and
the multi-run outputs (`study.json`, `study.md`, `plots/`, `tb/`) are new.
"""

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time

from keras_damped.study.config import LANDSCAPE
from keras_damped.study.config import TRAINING_KEYS
from keras_damped.study.config import StudyConfig

logger = logging.getLogger("keras_damped")
CONFIG_FILE = "study_config.json"
LANDSCAPE_FILE = "landscape.json"
# A run folder's finished attack batches while its evaluation runs.
PARTIAL_DIR = "eval-partial"


class StudyExistsError(ValueError):
    """OUT holds a study with other settings; nothing was changed."""


class StudyRunFailedError(RuntimeError):
    """A run's worker process failed; the runs that finished are kept."""


def _check_out(config, overwrite):
    """Refuses an OUT whose runs were trained otherwise (before anything is
    written). Models and seeds may be added and evaluation settings changed:
    the runs that exist are reused, the evaluations redone where needed."""
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
    stored = StudyConfig.from_json(path).train.to_dict()
    wanted = config.train.to_dict()
    changed = {
        k: (stored.get(k), wanted[k])
        for k in TRAINING_KEYS
        if stored.get(k) != wanted[k]
    }
    if changed:
        raise StudyExistsError(
            f"{config.out} holds a study trained with other settings {changed} "
            "(stored, requested); nothing was changed. Re-run with the same "
            "training settings to resume it, choose another --out, or pass "
            "--overwrite."
        )


class _Clock:
    """Elapsed time and an estimate of what remains: the mean time of the
    runs done here from their start (a resumed run, which did only the rest
    of its work, would make the estimate too short), times the rounds of
    `jobs` runs at once that the runs left take."""

    def __init__(self, total, jobs=1):
        self.start = time.monotonic()
        self.total = total
        self.jobs = jobs
        self.done = 0
        self.timed = []

    def finish(self, seconds=None, whole=True):
        self.done += 1
        if seconds is not None and whole:
            self.timed.append(seconds)

    def remaining(self):
        if self.done == self.total:
            return "nothing left"
        if not self.timed:
            return "time left unknown until a run is done from its start"
        waves = math.ceil((self.total - self.done) / self.jobs)
        return f"about {_duration(waves * sum(self.timed) / len(self.timed))} left"


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def resolve_jobs(jobs, threads, runs):
    """How many runs go at once: `jobs`, or (None) as many as the cores hold
    at `threads` threads each, never more than there are runs."""
    if jobs is None:
        jobs = max(1, (os.cpu_count() or 1) // (threads or os.cpu_count() or 1))
    return max(1, min(jobs, runs))


def _trained(config, model, seed):
    return os.path.isfile(
        os.path.join(config.train_config(model, seed).run_dir, "model.keras")
    )


def _train_one(config, model, seed, log):
    """Trains (or resumes) one run; logs its validation accuracy."""
    import keras

    from keras_damped.training import ProgressLogger
    from keras_damped.training import train

    train_config = config.train_config(model, seed)
    resume = os.path.isfile(os.path.join(train_config.run_dir, "config.json"))
    label = f"{model} seed {seed}"
    keras.backend.clear_session()
    result = train(train_config, resume=resume, callbacks=[ProgressLogger(label, 30.0)])
    accuracy = result.history.get("val_accuracy", [float("nan")])[-1]
    log(f"  {label}: trained, validation accuracy {accuracy:.4f}")


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


def _eval_dir(config, model, seed):
    return os.path.join(config.train_config(model, seed).run_dir, "eval")


def _evaluated(config, model, seed):
    return (
        _cached_report(_eval_dir(config, model, seed), config.evaluation_settings())
        is not None
    )


def _evaluate_one(config, model, seed, log):
    """Evaluates one trained run into its `eval/` folder."""
    import keras

    from keras_damped.models.loading import load_model_file
    from keras_damped.robustness import evaluate

    folder = config.train_config(model, seed).run_dir
    label = f"{model} seed {seed}"
    started = time.monotonic()
    last = [started]

    def progress(done, total):
        now = time.monotonic()
        if now - last[0] >= 30.0:
            last[0] = now
            log(
                f"  {label}: evaluation {100 * done / total:.0f}% of the work "
                f"({_duration(now - started)})"
            )

    keras.backend.clear_session()
    # Finished attack batches are kept here until the report is saved: a
    # study killed mid-evaluation resumes it on this machine.
    partial = os.path.join(folder, PARTIAL_DIR)
    report = evaluate(
        {label: load_model_file(os.path.join(folder, "model.keras"))},
        config.evaluation,
        progress=progress,
        partial=partial,
    )
    eval_dir = _eval_dir(config, model, seed)
    report.save(eval_dir, overwrite=True)
    with open(os.path.join(eval_dir, "study_settings.json"), "w") as f:
        json.dump(config.evaluation_settings(), f, indent=2)
    shutil.rmtree(partial)
    resumed = report.data.get("resumed")
    if resumed:
        log(
            f"  {label}: resumed its evaluation, {resumed['batches_reused']} "
            f"attack batches reused from {resumed['sessions']} earlier session(s)"
        )
    log(f"  {label}: clean {100 * report.data['models'][label]['clean']:.1f}%")


def _landscape(config, runs, log):
    """OUT/landscape.json: the loss landscape of every run (`LANDSCAPE`),
    computed once and reused while the runs stay the same."""
    from keras_damped.analysis import analyze
    from keras_damped.data import load_arrays
    from keras_damped.models.loading import load_model_file

    path = os.path.join(config.out, LANDSCAPE_FILE)
    labels = [f"{m} (seed{s})" for m, s in runs]
    settings = {
        **LANDSCAPE,
        "test_limit": min(LANDSCAPE["test_limit"], config.evaluation.test_limit),
        "seed": config.evaluation.seed,
        "models": labels,
    }
    if os.path.isfile(path):
        with open(path) as f:
            if json.load(f).get("study_settings") == settings:
                log("[landscape] reused")
                return
    started = time.monotonic()
    images, targets = load_arrays(
        config.train.dataset, "test", config.train.data_dir, settings["test_limit"]
    )
    models = {
        label: load_model_file(
            os.path.join(config.train_config(m, s).run_dir, "model.keras")
        )
        for label, (m, s) in zip(labels, runs)
    }
    result = analyze(
        models,
        images / 255.0,
        targets,
        T=LANDSCAPE["T"],
        points=LANDSCAPE["points"],
        points_2d=LANDSCAPE["points_2d"],
        seed=config.evaluation.seed,
        parts=("landscape_1d",),
    )
    result["study_settings"] = settings
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    log(f"[landscape] {len(runs)} runs in {_duration(time.monotonic() - started)}")


def run_one(config, model, seed, log, train_only=False):
    """What one run still needs: its training (or the rest of it), then its
    evaluation unless one with today's settings exists (or `train_only`)."""
    if not _trained(config, model, seed):
        _train_one(config, model, seed, log)
    if not train_only and not _evaluated(config, model, seed):
        _evaluate_one(config, model, seed, log)


# The states of a run that starts its work from the beginning (see _state).
WHOLE = ("starting", "trained earlier, evaluating")


def _state(config, model, seed, train_only=False):
    """What a run still needs, in words (None: nothing)."""
    if _trained(config, model, seed):
        if train_only or _evaluated(config, model, seed):
            return None
        partial = os.path.join(config.train_config(model, seed).run_dir, PARTIAL_DIR)
        if os.path.isdir(partial) and any(
            n.endswith(".npz") for n in os.listdir(partial)
        ):
            return "trained earlier, resuming its evaluation"
        return "trained earlier, evaluating"
    folder = config.train_config(model, seed).run_dir
    if os.path.isfile(os.path.join(folder, "config.json")):
        return "resuming its training"
    return "starting"


def _run_all(config, runs, jobs, log, train_only=False):
    """Trains and evaluates every run that needs it, `jobs` at once.

    With one job the runs go one after the other in this process; with more,
    each run (its training and its evaluation) is a fresh worker process
    (`keras_damped.study.worker`) with the study's thread count, so a run's
    numbers do not depend on `jobs`.
    """
    clock = _Clock(len(runs), jobs)
    pending = []
    for model, seed in runs:
        state = _state(config, model, seed, train_only)
        if state is None:
            clock.finish()
            done = "trained" if train_only else "trained and evaluated"
            log(
                f"[run {clock.done}/{clock.total}] {model} seed {seed}: {done} "
                "earlier, reused"
            )
        else:
            pending.append((model, seed, state))
    running, failed = {}, []

    def finished(model, seed, started, state):
        clock.finish(time.monotonic() - started, whole=state in WHOLE)
        log(
            f"[run {clock.done}/{clock.total}] {model} seed {seed}: done in "
            f"{_duration(time.monotonic() - started)}; "
            f"{_duration(time.monotonic() - clock.start)} elapsed, "
            f"{clock.remaining()}"
        )

    try:
        while pending or running:
            while pending and len(running) < jobs:
                model, seed, state = pending.pop(0)
                number = clock.done + len(running) + 1
                log(f"[run {number}/{clock.total}] {model} seed {seed}: {state}")
                started = time.monotonic()
                if jobs == 1:
                    run_one(config, model, seed, log, train_only)
                    finished(model, seed, started, state)
                    continue
                command = [sys.executable, "-m", "keras_damped.study.worker"]
                process = subprocess.Popen(
                    [*command, config.out, model, str(seed)]
                    + (["--train-only"] if train_only else []),
                    env=dict(os.environ, _KERAS_DAMPED_QUIET="1"),
                )
                running[process] = (model, seed, started, state)
            for process in [p for p in running if p.poll() is not None]:
                model, seed, started, state = running.pop(process)
                if process.returncode:
                    failed.append(f"{model} seed {seed} (exit {process.returncode})")
                    log(f"[run] {model} seed {seed}: failed, see above")
                else:
                    finished(model, seed, started, state)
            if running:
                time.sleep(0.2)
    finally:
        for process in running:
            process.terminate()
            process.wait()
    if failed:
        raise StudyRunFailedError(
            f"Training or evaluation failed for {', '.join(failed)}; the runs "
            "that finished are kept. Re-run the same command to resume."
        )


def run_study(config, overwrite=False, log=None, jobs=None, train_only=False):
    """Trains and evaluates every model x seed, then writes the comparison.

    Re-running the same study resumes it: finished runs and evaluations are
    reused, an interrupted run continues from its last checkpoint. Another
    study's folder is refused unless `overwrite`.

    Args:
        config: a `StudyConfig`.
        overwrite: replace whatever OUT holds.
        log: a function taking one line of progress (default: the
            `keras_damped` logger).
        jobs: how many runs train (and evaluate) at once, each in its own
            process with `config.threads` threads; None: as many as the
            cores allow. A run's numbers are the same for every `jobs`
            (same machine, same `config.threads`).
        train_only: train (or resume) every run and stop: no evaluation,
            landscape or study outputs (a later call without it evaluates
            the trained runs). Training a long study on one machine and
            evaluating it with later code, or elsewhere, is this.

    Returns:
        The study result dict (what `study.json` holds); None with
        `train_only`.
    """
    from keras_damped.study.outputs import write_if_changed
    from keras_damped.training.loop import use_cpu_threads

    log = log or logger.info
    config.validate()
    if jobs is not None and (
        isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1
    ):
        raise ValueError(
            f"jobs must be a positive integer or None. Received: jobs={jobs!r}"
        )
    _check_out(config, overwrite)
    os.makedirs(config.out, exist_ok=True)
    write_if_changed(
        os.path.join(config.out, CONFIG_FILE), json.dumps(config.to_dict(), indent=2)
    )
    # Seed-major: an interrupted study has whole seeds of every model.
    runs = [(m, s) for s in config.seeds for m in config.models]
    started = time.monotonic()
    log(
        f"Study {config.out}: {len(config.models)} models x {len(config.seeds)} "
        f"seeds = {len(runs)} runs"
    )
    jobs = resolve_jobs(jobs, config.threads, len(runs))
    if jobs == 1:
        use_cpu_threads(config.threads)
    log(f"{jobs} run(s) at once, {config.threads or 'default'} thread(s) each")
    _run_all(config, runs, jobs, log, train_only)
    if train_only:
        log(
            f"Trained {len(runs)} runs in {_duration(time.monotonic() - started)}; "
            "the same command without --train-only evaluates them"
        )
        return None
    if config.landscape:
        _landscape(config, runs, log)
    result = _aggregate(config, runs)
    log(
        f"Study finished in {_duration(time.monotonic() - started)}: "
        f"{config.out}/study.md, study.json, plots/, tb/"
    )
    return result


def _aggregate(config, runs):
    """The study result from the runs' reports (and the comparison with
    another study), written to the study folder."""
    from keras_damped.robustness import RobustnessReport
    from keras_damped.study.outputs import write_outputs
    from keras_damped.study.stats import depth_table
    from keras_damped.study.stats import summarize_study

    reports = {
        (m, s): RobustnessReport.from_json(
            os.path.join(_eval_dir(config, m, s), "report.json")
        )
        for m, s in runs
    }
    result = summarize_study(config, reports)
    if config.compare_with:
        with open(os.path.join(config.compare_with, "study.json")) as f:
            result["depth_comparison"] = depth_table(json.load(f), result)
    write_outputs(config, result)
    return result
