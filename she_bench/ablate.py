"""Ablation grids: a suite (YAML) expands into independent runs, each keyed by its config hash.

    name: toyshop
    recipes: [sft, dpo, grpo, srpo, she, she-no-grm, ...]
    benchmarks: [toyshop]
    models: [toy-1m]
    seeds: [0, 1, 2]
    overrides: {train.max_steps: 60}      # applied to every run (dotted keys)
    grid: {train.lr: [5.0e-5, 2.0e-4]}   # optional: one run per combination, named <recipe>_lr=5e-05...
    cells:                                # optional: settings that go together, one run each (x the grid)
      - {card.rationale_share: 0.1, warm_start.epochs: 20}
      - {card.rationale_share: 0.2, warm_start.epochs: 10}
    output_dir: runs

Keys are dotted config keys; card options sweep the same way (`card.options.n_train`, `card.rationale_share`).

Finished runs are skipped, unfinished ones resume (each run is `she-bench run` in its own
process, so `--emit` hands the same command lines to any external scheduler).
"""
from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from she_bench.config import ConfigError, make_config, nest, warm_start_identity
from she_bench.data.cards import Card, find_card
from she_bench.runs import Run

SUITE_KEYS = {"name", "description", "recipes", "benchmarks", "models", "seeds", "overrides", "grid", "cells",
              "output_dir", "history", "report", "claim", "knob", "analysis", "budget", "gpu"}
"""`report` (baseline, primary comparisons) is read by `she-bench report --suite`, not by ablate; a claim experiment's
`claim`, `analysis` and `budget` by its analysis (report/claims.py). Its `knob` ({key, levels, default}) is a sweep:
one cell per level, where the default level adds no override (so its runs are the ones every experiment shares).
A profile section (`gpu`) holds top-level keys that replace the suite's when that profile is asked for (more knob
levels, seeds, rows and longer budgets for a machine that has them), so one file declares both scales."""
PROFILES = ("gpu",)


@dataclass
class Job:
    recipe: str
    benchmark: str
    model: str
    seed: int
    overrides: dict
    output_dir: str
    run: Run
    experiments: list[str] = field(default_factory=list)
    """The claim experiment files (those with an `analysis`) this run is run for; each run records them."""
    warm_start_hash: str | None = None
    """Set where the run must start from one build's warm start (a cell finished on the build it began on)."""

    def command(self) -> list[str]:
        cmd = ["she-bench", "run", "--method", self.recipe, "--benchmark", self.benchmark, "--model", self.model,
               "--seed", str(self.seed), "--output-dir", self.output_dir]
        cmd += [x for path in self.experiments for x in ("--experiment", path)]
        cmd += ["--warm-start-hash", self.warm_start_hash] if self.warm_start_hash else []
        return cmd + [f"{k}={yaml_value(v)}" for k, v in sorted(self.overrides.items())]

    def status(self) -> str:
        if self.run.is_done():
            return "done"
        return "partial" if self.run.path.exists() else "new"


def read_suite(path: Path, profile: str | None = None) -> dict:
    """A suite file as a mapping, its `profile` section (if asked for and present) laid over the top-level keys."""
    try:
        suite = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the suite: {e}") from e
    if not isinstance(suite, dict):
        raise ConfigError(f"{path}: a suite must be a YAML mapping")
    unknown = set(suite) - SUITE_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown suite key '{sorted(unknown)[0]}' (known: {', '.join(sorted(SUITE_KEYS))})")
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    over = suite.pop(profile, None) if profile else None
    if over is not None:
        if not isinstance(over, dict) or set(over) - (SUITE_KEYS - {"gpu", "analysis", "claim", "name"}):
            raise ConfigError(f"{path}: field '{profile}' must map suite keys (knob, seeds, recipes, overrides, "
                              f"output_dir, ...) to the values that replace them")
        suite.update(over)
    return suite


def load_suite(path: Path, output_dir: str | None = None, profile: str | None = None) -> list[Job]:
    suite = read_suite(path, profile)
    if not suite.get("recipes"):
        raise ConfigError(f"{path}: field 'recipes' must list at least one recipe")
    base = {str(k): v for k, v in (suite.get("overrides") or {}).items()}
    grid = suite.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: field 'grid' must map dotted keys to non-empty lists of values")
    together = suite.get("cells")
    if together is not None and (not isinstance(together, list) or not together
                                 or not all(isinstance(c, dict) and c for c in together)):
        raise ConfigError(f"{path}: field 'cells' must list non-empty mappings of dotted keys to values")
    together = together or [{}]
    knob = suite.get("knob")
    if knob is not None:
        if (not isinstance(knob, dict) or set(knob) - {"key", "levels", "default"}
                or not isinstance(knob.get("key"), str)
                or not isinstance(knob.get("levels"), list) or not knob["levels"]):
            raise ConfigError(f"{path}: field 'knob' must be {{key: a dotted key, levels: a non-empty list, default: "
                              f"the level that adds no override}}")
        levels = [{} if "default" in knob and v == knob["default"] else {knob["key"]: v} for v in knob["levels"]]
        together = [{**extra, **lv} for lv in levels for extra in together]
    cells = [{**dict(zip(grid, values)), **{str(k): v for k, v in extra.items()}}
             for values in itertools.product(*grid.values()) for extra in together]
    out = output_dir or suite.get("output_dir", "runs")
    jobs, seen = [], set()
    for benchmark in suite.get("benchmarks", ["toyshop"]):
        bench_name = Card.from_yaml(find_card(benchmark)).name
        for model in suite.get("models", ["toy-1m"]):
            for seed in suite.get("seeds", [0]):
                for recipe in suite["recipes"]:
                    for cell in cells:
                        overrides = {**base, **cell}
                        if cell:
                            overrides["name"] = cell_name(recipe, cell)
                        cfg = make_config(recipe, {**nest(overrides), "benchmark": benchmark, "model": model,
                                                   "seed": seed, "output_dir": out})
                        run = Run(cfg, bench_name)
                        if run.path in seen:
                            continue
                        seen.add(run.path)
                        jobs.append(Job(recipe, benchmark, model, seed, overrides, out, run,
                                        experiments=[str(path)] if "analysis" in suite else []))
    return jobs


def analysis_hash(path: Path) -> str:
    """The hash of an experiment file's `analysis` section (what its claims page computes), recorded by each run made
    for it: evidence made under another analysis is refused."""
    import hashlib

    analysis = read_suite(path).get("analysis")
    return hashlib.sha256(json.dumps(analysis, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_suites(paths: list[Path], output_dir: str | None = None, profile: str | None = None) -> list[Job]:
    """The jobs of several suites, in order, each run once (suites that share a cell share its runs)."""
    jobs: dict = {}
    for path in paths:
        for j in load_suite(path, output_dir, profile):
            if j.run.path in jobs:
                jobs[j.run.path].experiments += [e for e in j.experiments if e not in jobs[j.run.path].experiments]
            else:
                jobs[j.run.path] = j
    return list(jobs.values())


def load_report_plan(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """A suite's `report:` section: (baseline, primary comparisons as (variant, versus) pairs)."""
    try:
        plan = (yaml.safe_load(Path(path).read_text()) or {}).get("report") or {}
    except (OSError, yaml.YAMLError, AttributeError) as e:
        raise ConfigError(f"{path}: cannot read the suite's report section: {e}") from e
    primary = plan.get("primary") or []
    if not isinstance(primary, list) or not all(isinstance(p, list) and len(p) == 2 for p in primary):
        raise ConfigError(f"{path}: field 'report.primary' must list [variant, versus] pairs")
    return str(plan.get("baseline", "grpo")), [(str(a), str(b)) for a, b in primary]


def yaml_value(value) -> str:
    """A value as the YAML the command line reads back to the same value (5e-05 -> 5.0e-05, None -> null)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def cell_name(recipe: str, cell: dict) -> str:
    """The run name of one grid cell: the recipe and each swept key's last part with its value."""
    def shown(value) -> str:
        return "+".join(map(str, value)) if isinstance(value, list) else str(value)

    return recipe + "".join(f"_{key.split('.')[-1]}={shown(value)}" for key, value in cell.items())


def warm_start_group(job: Job) -> str:
    """Jobs of one group share one cached warm start (config.warm_start_identity), and the first of them builds it."""
    return warm_start_identity(job.run.cfg.to_dict())


def on_one_build(jobs: list[Job], evidence: dict) -> tuple[list[Job], list[str]]:
    """The jobs still to run when `evidence` (a claims report's lines) already holds some, keeping every cell (jobs of
    one warm-start identity) on one build: a cell whose lines are all of one build runs its missing jobs from that
    build's warm start when it is at hand here (`--warm-start-hash`), and otherwise runs again whole, as does a cell
    whose lines mix builds. Returns the jobs and one note per cell that runs again whole."""
    from she_bench.methods.sft import warm_starts_by_hash
    from she_bench.report.evidence import undetermined

    at_hand = warm_starts_by_hash()
    lines: dict[str, list] = {}
    for ev in evidence.values():
        lines.setdefault(warm_start_identity(ev.config), []).append(ev)
    cells: dict[str, list[Job]] = {}
    for j in jobs:
        cells.setdefault(warm_start_group(j), []).append(j)
    todo, notes = [], []
    for key, cell in cells.items():
        rels = {j.run.path.relative_to(j.output_dir).as_posix(): j for j in cell}
        missing = [j for r, j in rels.items() if r not in evidence]
        known = lines.get(key, [])
        ids = sorted({ev.build["id"] for ev in known if not undetermined(ev.build)})
        full = sorted({ev.build.get("warm_start_hash") for ev in known if not undetermined(ev.build)} - {None})
        name = f"{cell[0].benchmark} {cell[0].model} seed {cell[0].seed} {cell[0].run.path.name}"
        if not known:
            todo += missing
            continue
        if len(ids) == 1 and not missing:
            continue
        if len(ids) == 1 and len(full) == 1 and full[0] in at_hand:
            for j in missing:
                j.warm_start_hash = full[0]
            todo += missing
            continue
        why = (f"its evidence mixes builds {', '.join(ids)}" if len(ids) > 1
               else f"build {ids[0] if ids else 'unknown'} of its {len(known)} evidence lines is not at hand here")
        others = len({ev.rel for ev in known} - set(rels))
        notes.append(f"cell of {name}: {why}: its {len(cell)} runs run again on one build"
                     + (f" ({others} more evidence lines of this cell belong to experiment files not given: give them "
                        "too, or the new build cannot replace the cell)" if others else ""))
        todo += cell
    return todo, notes


def interleave(jobs: list[Job]) -> list[Job]:
    """Jobs in turn from each warm-start group (in the order the groups first appear), so parallel workers build
    different warm starts instead of one waiting on another's lock; within a group the suite's order is kept."""
    groups: dict[str, list[Job]] = {}
    for j in jobs:
        groups.setdefault(warm_start_group(j), []).append(j)
    queues = list(groups.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def run_jobs(jobs: list[Job], workers: int = 1, log_dir: Path | None = None) -> int:
    """Run every unfinished job as its own process (warm-start groups interleaved); returns the number that failed."""
    todo = interleave([j for j in jobs if j.status() != "done"])
    print(f"{len(jobs)} runs: {len(jobs) - len(todo)} done, {len(todo)} to run with {workers} worker(s)", flush=True)
    failed, finished, t0 = 0, 0, time.time()
    # workers share the cores: more torch threads than cores slows every run several-fold
    env = {**os.environ,
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")
                              or str(max(1, (os.cpu_count() or 1) // max(1, workers)))}

    def one(job: Job) -> tuple[Job, int, float]:
        job.run.path.mkdir(parents=True, exist_ok=True)
        start = time.time()
        with open(job.run.path / "ablate.log", "a") as log:
            rc = subprocess.run([sys.executable, "-m", "she_bench.cli", *job.command()[1:]], stdout=log,
                                stderr=subprocess.STDOUT, env=env).returncode
        return job, rc, time.time() - start

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for fut in as_completed([pool.submit(one, j) for j in todo]):
            job, rc, seconds = fut.result()
            finished += 1
            failed += rc != 0
            state = "ok" if rc == 0 else f"FAILED (exit {rc}, see {job.run.path / 'ablate.log'})"
            print(f"[{finished}/{len(todo)}] {job.run.path.name}: {state} in {seconds:.0f}s "
                  f"(elapsed {time.time() - t0:.0f}s)", flush=True)
    return failed


def emit(jobs: list[Job]) -> str:
    return "".join(shlex.join(j.command()) + "\n" for j in jobs if j.status() != "done")
