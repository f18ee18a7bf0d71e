"""Exclusive file locks: one owner at a time for a run directory or a shared cached artefact (toy model,
warm start, GRM). The first process works, the others wait and then find the work done.

Under data parallelism the owner is the launch, not a process: with `collective=True` (every rank calls
it at the same point) rank 0 takes the lock and writes a token of its launch into the lock file, and the
other ranks wait until the file holds that token. A second launch therefore waits as a whole, and the
ranks of one launch never wait on each other (nor on a collective with a timeout)."""
from __future__ import annotations

import fcntl
import os
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from she_bench.runs import is_main_process, process_state

POLL_SECONDS = 0.5


@contextmanager
def _exclusive(lock: Path):
    """Hold `lock` exclusively (flock: released by the kernel if the holder dies); say so when waiting."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)  # never truncate: the file holds the owner's token
    with os.fdopen(fd, "r+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {lock}: another process holds it", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _launch_token() -> str:
    """A fresh token from rank 0, the same on every rank of the launch."""
    from accelerate.utils import broadcast_object_list

    process_state()  # joins the process group if the launch has not yet
    return broadcast_object_list([uuid.uuid4().hex if is_main_process() else None], from_process=0)[0]


def _holder(lock: Path) -> str:
    try:
        return lock.read_text()
    except FileNotFoundError:
        return ""


@contextmanager
def file_lock(path: Path, collective: bool = False):
    """Hold `path`.lock exclusively for the block. collective: every rank of a data-parallel launch enters
    together, and the launch holds the lock as one (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    if not collective or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        with _exclusive(lock):
            yield
        return
    token = _launch_token()
    if not is_main_process():
        while _holder(lock) != token:
            time.sleep(POLL_SECONDS)
        yield
        return
    with _exclusive(lock) as fh:
        fh.seek(0)
        fh.truncate()
        fh.write(token)
        fh.flush()
        yield
