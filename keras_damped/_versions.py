"""The library versions a run or a report records."""

import importlib.metadata
import sys

PACKAGES = ("keras", "tensorflow", "tensorflow-datasets", "cleverhans")


def library_versions():
    """{"python": ..., package: version or None} for the packages that matter."""
    out = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out
