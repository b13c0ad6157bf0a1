"""What /proc/cpuinfo says about the CPU (the bottom of the import graph:
both the oneDNN switch and the machine record read it)."""

import platform


def _cpuinfo(key):
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name():
    """The CPU model as /proc/cpuinfo names it (else what `platform` knows)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    return set((_cpuinfo("flags") or "").split())
