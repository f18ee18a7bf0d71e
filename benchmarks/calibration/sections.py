"""What the calibration scripts share: reports/calibration.md is written in named sections, so each script
rewrites its own and leaves the others as they are; and one command line for them all.

    <!-- section: testbed-pool -->
    ...
    <!-- end: testbed-pool -->
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "reports" / "calibration.md"
TITLE = "# Calibration records (dev split)\n"


def write_section(name: str, text: str, path: Path = REPORT) -> None:
    """Replace section `name` of `path` with `text` (appended at the end when new); the rest is kept."""
    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise ValueError(f"section names are lowercase words joined by '-', got {name!r}")
    block = f"<!-- section: {name} -->\n{text.rstrip()}\n<!-- end: {name} -->\n"
    old = path.read_text() if path.exists() else TITLE
    pattern = re.compile(rf"<!-- section: {name} -->\n.*?<!-- end: {name} -->\n", re.S)
    new = pattern.sub(lambda _: block, old, count=1) if pattern.search(old) else old.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)


def script_args(doc: str) -> argparse.Namespace:
    """--workers and --report-only, with the working directory at the project root (suites name their output
    folders relative to it)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--workers", type=int, default=2, help="runs in parallel")
    p.add_argument("--report-only", action="store_true", help="write the section(s) from the runs present, run nothing")
    args = p.parse_args()
    os.chdir(REPORT.parents[1])
    return args


def cell_rows(jobs, keys: tuple[str, ...], figures) -> list[dict]:
    """One row per cell (the values of `keys` in a job's overrides), over its finished jobs: each seed's
    `figures(job)` in "runs", and every figure's mean over the seeds that have it."""
    cells: dict[tuple, list] = {}
    for job in jobs:
        if job.run.is_done():
            cells.setdefault(tuple(job.overrides[k] for k in keys), []).append({"seed": job.seed, **figures(job)})
    rows = []
    for cell, runs in sorted(cells.items()):
        means = {k: statistics.fmean(xs) if (xs := [r[k] for r in runs if r[k] is not None]) else None
                 for k in runs[0] if k != "seed"}
        rows.append({**dict(zip(keys, cell)), "seeds": len(runs), "runs": runs, **means})
    return rows
