"""TensorFlow's oneDNN CPU kernels wherever they pay, and a record of why.

TensorFlow's Linux wheels (2.9 and later) turn their oneDNN kernels on by
default only on CPUs with one of the neural-network extensions in
`TF_DEFAULT_FLAGS` (TensorFlow's `DefaultOneDnnPolicy`, read in its
source). Every other x86 CPU, AVX2-only ones above all, gets TensorFlow's
Eigen kernels, although oneDNN trains keras_damped's networks much faster
there: on a 2-core AVX2-only AMD EPYC, graph mode went from 0.60x to 0.94x
the authors' PyTorch at depth 20 (docs: README, Performance;
`benchmarks/frameworks.py` measures it with the state as a column).

`enable()` runs when keras_damped is imported. Before TensorFlow loads, on
such a CPU, it sets `TF_ENABLE_ONEDNN_OPTS=1`; a value the user set is never
touched. `state()` says whether oneDNN is on in this process and why; every
run's config.json and report.json record it with the machine.
"""

import os
import platform
import sys

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# /proc/cpuinfo's names for the CPU features TensorFlow's default tests.
TF_DEFAULT_FLAGS = (
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
X86 = ("x86_64", "amd64", "i386", "i686")
# What enable() decided when keras_damped was imported (see state()).
_decision = {}


def _flag(value):
    """TensorFlow's reading of the variable: True, False or None (invalid,
    so TensorFlow keeps its default)."""
    value = value.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    return None


def tensorflow_default(flags, system=None):
    """Whether TensorFlow turns oneDNN on by itself on a CPU with `flags`."""
    system = system or platform.system()
    return system == "Linux" and any(f in flags for f in TF_DEFAULT_FLAGS)


def pays(flags, machine=None, system=None):
    """Whether keras_damped turns oneDNN on: an x86 Linux CPU with AVX2 where
    TensorFlow leaves it off (measured there; other CPUs keep TensorFlow's
    default)."""
    machine = (machine or platform.machine()).lower()
    system = system or platform.system()
    return (
        system == "Linux"
        and machine in X86
        and "avx2" in flags
        and not tensorflow_default(flags, system)
    )


def decide(environ, flags, tensorflow_loaded, machine=None, system=None):
    """What to do at import: (the value to set or None, the reason).

    Pure, for tests: `environ` is the process environment, `flags` the CPU's
    feature flags, `tensorflow_loaded` whether TensorFlow is imported already.
    """
    user = environ.get(VARIABLE)
    if user is not None and user.strip():
        return None, f"set by the user ({VARIABLE}={user!r})"
    if tensorflow_default(flags, system):
        found = [f for f in TF_DEFAULT_FLAGS if f in flags]
        return None, f"TensorFlow's default on this CPU (it has {found[0]})"
    if not pays(flags, machine, system):
        return None, "TensorFlow's default on this CPU"
    if tensorflow_loaded:
        return None, (
            "off: TensorFlow was imported before keras_damped, with its "
            "default for this CPU (no AVX512_VNNI, AVX_VNNI or AMX)"
        )
    return "1", (
        "turned on by keras_damped: TensorFlow leaves it off on this x86 CPU "
        "(no AVX512_VNNI, AVX_VNNI or AMX), where it trains faster"
    )


def enable():
    """Sets TF_ENABLE_ONEDNN_OPTS=1 where `decide` says so (once, at import)."""
    if _decision:
        return
    from keras_damped._cpu import cpu_flags

    loaded = "tensorflow" in sys.modules
    value, reason = decide(os.environ, cpu_flags(), loaded)
    if value is not None:
        os.environ[VARIABLE] = value
    # TensorFlow came first on a CPU where we would have turned oneDNN on.
    late = loaded and decide(os.environ, cpu_flags(), False)[0] is not None
    _decision.update(reason=reason, late=late)


def _enabled_now():
    """oneDNN's state in this process: TensorFlow's answer once it is loaded,
    else what it will read from the environment."""
    if "tensorflow" in sys.modules:
        try:
            from tensorflow.python.util import _pywrap_util_port

            return bool(_pywrap_util_port.IsMklEnabled())
        except (ImportError, AttributeError):
            return None
    from keras_damped._cpu import cpu_flags

    value = _flag(os.environ.get(VARIABLE, ""))
    return tensorflow_default(cpu_flags()) if value is None else value


def state():
    """{"enabled": True/False (None: unknown), "reason": why} for records."""
    enable()
    return {"enabled": _enabled_now(), "reason": _decision["reason"]}


def advice():
    """One line telling how to turn oneDNN on where TensorFlow was imported
    first and left it off on a CPU where it pays (None otherwise: a user's
    own setting is their choice)."""
    current = state()
    if current["enabled"] is not False or not _decision["late"]:
        return None
    return (
        "TensorFlow's oneDNN kernels are off on this CPU, where they train "
        f"keras_damped's networks faster ({current['reason']}). Set "
        f"{VARIABLE}=1 before anything imports TensorFlow, e.g. "
        f"`export {VARIABLE}=1`, or import keras_damped first."
    )


_warned = []


def warn_once(log):
    """Passes `advice()` to `log` the first time there is any."""
    line = advice()
    if line and not _warned:
        _warned.append(line)
        log(line)
