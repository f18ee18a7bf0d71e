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
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from she_bench.config import ConfigError, make_config, nest
from she_bench.data.cards import Card, find_card
from she_bench.runs import Run

SUITE_KEYS = {"name", "description", "recipes", "benchmarks", "models", "seeds", "overrides", "grid", "cells", "output_dir",
              "report", "claim", "knob", "analysis", "budget", "gpu"}
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

    def command(self) -> list[str]:
        cmd = ["she-bench", "run", "--method", self.recipe, "--benchmark", self.benchmark, "--model", self.model,
               "--seed", str(self.seed), "--output-dir", self.output_dir]
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
        if (not isinstance(knob, dict) or set(knob) - {"key", "levels", "default"} or not isinstance(knob.get("key"), str)
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
                        jobs.append(Job(recipe, benchmark, model, seed, overrides, out, run))
    return jobs


def load_suites(paths: list[Path], output_dir: str | None = None, profile: str | None = None) -> list[Job]:
    """The jobs of several suites, in order, each run once (suites that share a cell share its runs)."""
    jobs, seen = [], set()
    for path in paths:
        for j in load_suite(path, output_dir, profile):
            if j.run.path not in seen:
                seen.add(j.run.path)
                jobs.append(j)
    return jobs


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


# card options that decide what RL knows of its prompts, never the warm start's rows (methods/sft.warm_start_dir)
RL_ONLY_CARD_KEYS = ("annotation_share",)


def warm_start_group(job: Job) -> str:
    """What decides a job's warm start (benchmark, card options but those RL alone reads, model, seed, warm-start,
    prompt and LoRA settings): jobs of one group share one cached warm start, and the first of them builds it."""
    c = job.run.cfg
    card = {k: v for k, v in c.card.items() if k not in RL_ONLY_CARD_KEYS}
    return json.dumps([c.benchmark, card, c.model, c.seed, asdict(c.warm_start), asdict(c.prompt), c.train.lora,
                       c.train.lora_r], sort_keys=True, default=str)


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
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, workers)))}

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
