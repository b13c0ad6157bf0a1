"""One study run in a process of its own (`run_study(jobs>1)`).

    python -m keras_damped.study.worker OUT MODEL SEED [--train-only]

reads `OUT/study_config.json`, sets the study's thread count before
TensorFlow executes anything, and trains the run (or the rest of its
training), then evaluates it (not with --train-only), skipping what is
done already. Exit status:
0 done, 3 training diverged, 1 any other failure (the traceback on stderr).
"""

import logging
import os
import sys
import threading
import time


def _exit_with(parent):
    """Ends this process when the study process that started it is gone (a
    killed study must not leave runs training behind its back)."""
    from keras_damped.training.callbacks import SAVING

    while os.getppid() == parent:
        time.sleep(0.5)
    SAVING.acquire()
    os._exit(1)


def main(argv=None):
    argv = list(argv if argv is not None else sys.argv[1:])
    train_only = "--train-only" in argv
    out, model, seed = [a for a in argv if a != "--train-only"]
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    from keras_damped._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    logging.basicConfig(stream=sys.stdout, format="%(message)s")
    logging.getLogger("keras_damped").setLevel(logging.INFO)

    from keras_damped.study.config import StudyConfig
    from keras_damped.study.runner import CONFIG_FILE
    from keras_damped.study.runner import run_one
    from keras_damped.training import TrainingDivergedError
    from keras_damped.training import use_cpu_threads

    # validate() also imports the plug-ins that register users' attacks.
    config = StudyConfig.from_json(os.path.join(out, CONFIG_FILE)).validate()
    use_cpu_threads(config.threads)
    logger = logging.getLogger("keras_damped")
    try:
        run_one(config, model, int(seed), logger.info, train_only)
    except TrainingDivergedError as error:
        logger.error("%s seed %s: %s", model, seed, error)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
