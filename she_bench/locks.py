"""An exclusive file lock, so parallel runs build a shared cached artefact (toy model, warm
start, GRM) once: the first builds, the others wait and then find it in the cache."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path, collective: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if collective and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
