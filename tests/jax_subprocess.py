"""Running a test script on the JAX backend, in a fresh process."""

import os


def run_on_jax(script, *args, marker):
    """Runs a Python script in a fresh process on the JAX backend (CPU) and
    checks that it exits cleanly and prints `marker`; returns its stdout."""
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert marker in result.stdout
    return result.stdout
