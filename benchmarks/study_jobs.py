"""Wall time of a tiny study, one run at a time or several at once.

The same `keras-damped study` (2 models x 2 seeds on real Fashion-MNIST,
1 epoch on 2,048 images, FGSM and one noise on 128 test images) three
ways, each from an empty folder:

* `--jobs 1 --threads <cores>`: one run at a time using every core (how a
  study ran before `--jobs`);
* `--jobs <cores> --threads 1`: the default, one single-threaded run per
  core at once;
* `--jobs 1 --threads 1`: the default's runs one after the other (the same
  numbers as the default, digit for digit).

    python benchmarks/study_jobs.py
    python benchmarks/study_jobs.py --quick    # 1 run, 256 images, clean only

`--quick` (the test suite's smoke run) studies one model and one seed, so
each plan is a single run in the study's own process, and the last plan
(which would repeat the second: one run is one job) is left out: it checks
that the script runs and writes its table, not what parallel runs gain (the
test suite's tiny study covers runs in worker processes). It also trains in
graph mode (`--jit-compile off`): on AVX2-only CPUs `auto` picks XLA, whose
compile would be most of such a short run.
"""

import os
import subprocess
import sys
import tempfile
import time

import _common


def tiny_study(quick):
    quick_only = ["--jit-compile", "off"] if quick else []
    return quick_only + [
        "--model",
        "in_resnet20" if quick else "resnet20,in_resnet20",
        "--seeds",
        "0" if quick else "0,1",
        "--dataset",
        "fashion_mnist",
        "--epochs",
        "1",
        "--train-limit",
        "256" if quick else "2048",
        "--attacks",
        "none" if quick else "fgsm",
        "--eps",
        "8",
        "--noises",
        "none" if quick else "gaussian",
        "--severities",
        "1",
        "--test-limit",
        "64" if quick else "128",
    ]


def main():
    p = _common.parser(__doc__.splitlines()[0], "study_jobs")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    plans = [(1, cores), (cores, 1), (1, 1)]
    if args.quick:  # one run: --jobs <cores> is --jobs 1 already
        plans = plans[:2]
    rows, table = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for jobs, threads in plans:
            out = os.path.join(scratch, f"jobs{jobs}-threads{threads}")
            command = [sys.executable, "-m", "keras_damped.cli", "study"]
            command += tiny_study(args.quick)
            command += ["--jobs", str(jobs), "--threads", str(threads), "--out", out]
            begin = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - begin
            if result.returncode != 0:
                raise SystemExit(
                    f"{' '.join(command)} failed:\n{result.stderr[-3000:]}"
                )
            rows.append(
                {"jobs": jobs, "threads": threads, "seconds": round(seconds, 1)}
            )
            print(f"--jobs {jobs} --threads {threads}: {seconds:.0f} s", flush=True)
    base = rows[0]["seconds"]
    for row in rows:
        speedup = base / row["seconds"]
        table.append([row["jobs"], row["threads"], row["seconds"], f"{speedup:.2f}x"])
    record = {"machine": _common.machine(), "quick": args.quick, "rows": rows}
    _common.save(
        args.out,
        record,
        _common.markdown_table(
            [
                "--jobs",
                "--threads",
                "wall s",
                f"speed-up vs --jobs 1 --threads {cores}",
            ],
            table,
        ),
        "A tiny study: runs one at a time or in parallel",
    )


if __name__ == "__main__":
    main()
