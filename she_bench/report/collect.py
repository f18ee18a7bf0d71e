"""Read run directories for a report: which runs are reported, which are skipped and why.

A run is reported when its manifest says ``status: done`` and its metrics and predictions
can be read; every other run is listed as skipped with the reason. Runs are grouped into
variants by (benchmark, name); the seeds of a variant are its replicates.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from she_bench.runs import read_jsonl

REQUIRED = ("config.yaml", "manifest.json", "metrics.json", "predictions.jsonl")


@dataclass
class RunData:
    path: Path
    rel: str
    """Path relative to the common parent of all run directories given (POSIX separators)."""
    benchmark: str
    name: str
    method: str
    model: str
    seed: int
    config: dict
    manifest: dict
    metrics: dict
    predictions: list[dict] = field(repr=False)
    train_log: list[dict] = field(repr=False)


@dataclass
class Skipped:
    rel: str
    status: str | None
    reason: str


class NothingToReport(ValueError):
    """No run directory given holds a reportable run; `skipped` says why each was left out."""

    def __init__(self, message: str, skipped: list[Skipped]):
        super().__init__(message)
        self.skipped = skipped


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Each path is a run directory (it holds manifest.json) or a folder searched for them."""
    found = set()
    for p in map(Path, paths):
        if (p / "manifest.json").is_file():
            found.add(p.resolve())
        elif p.is_dir():
            found.update(m.parent.resolve() for m in p.rglob("manifest.json"))
        else:
            raise FileNotFoundError(f"{p}: not a run directory (no manifest.json) nor a folder")
    return sorted(found)


def common_root(dirs: list[Path]) -> Path:
    """The common parent of the run directories' parents (so one run still shows its own name)."""
    if not dirs:
        return Path(".")
    return Path(os.path.commonpath([str(d.parent) for d in dirs]))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path.name}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a JSON object")
    return data


def _benchmark_name(config: dict, path: Path) -> str:
    bench = str(config.get("benchmark") or path.parent.name)
    if "/" in bench or bench.endswith((".yaml", ".yml")):
        bench = Path(bench).stem
    return bench


def read_run(path: Path, rel: str) -> RunData | Skipped:
    """One run directory, or the reason it is not reported."""
    try:
        manifest = _read_json(path / "manifest.json")
    except (OSError, ValueError) as e:
        return Skipped(rel, None, str(e))
    status = manifest.get("status")
    if status != "done":
        return Skipped(rel, status, f"status is {status!r}, not 'done'")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if missing:
        return Skipped(rel, status, "missing " + ", ".join(missing))
    try:
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        metrics = _read_json(path / "metrics.json")
        predictions = read_jsonl(path / "predictions.jsonl")
    except (OSError, ValueError, yaml.YAMLError) as e:
        return Skipped(rel, status, str(e))
    if "overall" not in metrics:
        return Skipped(rel, status, "metrics.json: field 'overall' missing")
    if not predictions:
        return Skipped(rel, status, "predictions.jsonl: no predictions")
    seed = manifest.get("seed", config.get("seed"))
    method = str(manifest.get("method") or config.get("method") or "")
    name = str(manifest.get("name") or config.get("name") or method)
    return RunData(
        path=path, rel=rel, benchmark=_benchmark_name(config, path), name=name, method=method,
        model=str(config.get("model", "")), seed=int(seed) if seed is not None else 0,
        config=config, manifest=manifest, metrics=metrics, predictions=predictions,
        train_log=read_jsonl(path / "train_log.jsonl"),
    )


def collect(run_dirs: list[Path]) -> tuple[list[RunData], list[Skipped]]:
    """Reported runs (sorted by benchmark, name, seed, path) and skipped ones (sorted by path).

    Two runs of one variant with the same seed are not replicates: the first by path is kept,
    the other skipped with the reason.
    """
    dirs = find_run_dirs(run_dirs)
    root = common_root(dirs)
    runs, skipped = [], []
    for d in dirs:
        got = read_run(d, Path(os.path.relpath(d, root)).as_posix())
        (skipped if isinstance(got, Skipped) else runs).append(got)
    runs.sort(key=lambda r: (r.benchmark, r.name, r.seed, r.rel))
    kept, seen = [], {}
    for r in runs:
        key = (r.benchmark, r.name, r.seed)
        if key in seen:
            skipped.append(Skipped(r.rel, "done", f"duplicate of {seen[key]} (same benchmark, name and seed)"))
        else:
            seen[key] = r.rel
            kept.append(r)
    skipped.sort(key=lambda s: s.rel)
    return kept, skipped


def group(runs: list[RunData]) -> dict[tuple[str, str], list[RunData]]:
    """Runs by (benchmark, name), each list sorted by seed."""
    out: dict[tuple[str, str], list[RunData]] = {}
    for r in runs:
        out.setdefault((r.benchmark, r.name), []).append(r)
    return {k: sorted(v, key=lambda r: r.seed) for k, v in sorted(out.items())}
