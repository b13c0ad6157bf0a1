"""Writing a results folder so that an interrupted write never looks complete."""

import contextlib
import os
import shutil


def check_out_dir(out_dir, overwrite=False):
    """Refuses, before any work, an `out_dir` that holds files (unless
    `overwrite`): nothing is overwritten by surprise."""
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds results; nothing was changed. Pass "
            "overwrite=True (--overwrite) or choose another folder (--out)."
        )


@contextlib.contextmanager
def staged_folder(out_dir, overwrite=False):
    """Yields `OUT.partial` to write into; on success it becomes `OUT`.

    An `OUT` that already holds files is refused unless `overwrite`. If the
    body fails, `OUT` is untouched and only the `.partial` folder remains.
    """
    out_dir = os.path.abspath(out_dir)
    check_out_dir(out_dir, overwrite)
    staging = out_dir.rstrip("/") + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    yield staging
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
