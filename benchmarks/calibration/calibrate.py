"""Calibrate the toyshop training regime on dev: stage A (warm start), stage B (RL), the decision
rules of README.md beside this file, and reports/calibration.md.

    python benchmarks/calibration/calibrate.py --workers 2
    python benchmarks/calibration/calibrate.py --report-only     # rewrite the report from the runs

Resumable: every run is a she-bench run directory keyed by its config hash, skipped when done.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from she_bench.ablate import load_suite, run_jobs
from she_bench.runs import read_jsonl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REPORT = ROOT / "reports" / "calibration.md"
CHECKPOINT_STEPS = (50, 100)
"""Intermediate checkpoints of each stage-B run that are evaluated like its final model."""
RL_BUDGET_STEPS = 120
"""The most RL steps that fit the suite budget (README.md: 150 s of training at about 1.2 s per step)."""
QU, IU = "query_understanding", "item_understanding"


# ---------------------------------------------------------------- reading runs

def figures(metrics: dict) -> dict:
    """The figures a cell reports, from one metrics.json."""
    o, sl = metrics["overall"], metrics["slices"]
    sampled = metrics.get("sampled") or {}
    return {
        "acc": o["accuracy"]["value"], "f1": o["macro_f1"]["value"],
        "acc_head": sl["head"]["accuracy"]["value"], "acc_tail": sl["tail"]["accuracy"]["value"],
        "f1_head": sl["head"]["macro_f1"]["value"], "f1_tail": sl["tail"]["macro_f1"]["value"],
        "format_valid": o["format_valid_rate"], "qu": o["step_accuracy"][QU], "iu": o["step_accuracy"][IU],
        "cm": o["step_accuracy"]["category_matching"], "am": o["step_accuracy"]["attribute_matching"],
        "sampled_acc": sampled.get("accuracy"),
    }


def training(log: list[dict], steps: int) -> dict:
    """Training reward over the first and last tenth of `steps`, and seconds spent up to it."""
    main = [r for r in log if r.get("stage") == "main" and "reward_mean" in r and r["step"] <= steps]
    tenth = max(1, math.ceil(steps / 10))
    first = [r["reward_mean"] for r in main if r["step"] <= tenth]
    last = [r["reward_mean"] for r in main if r["step"] > steps - tenth]
    return {"reward_first": _mean(first), "reward_last": _mean(last),
            "seconds": round(sum(r.get("seconds_per_step") or 0 for r in main), 1)}


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def read(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------- stage A

def _cell_a(job) -> tuple[str, float]:
    return job.model, float(job.overrides["warm_start.epochs"])


COST_RATIO = {"toy-1m": 1.0, "toy-5m": 4.4}
"""Warm-start seconds per epoch relative to toy-1m, measured in this sweep: toy-5m took 4.44 s per step
over its first 158 steps against toy-1m's 0.95 (both 3 runs on the 2 cores); toy-5m has 4.6x the parameters."""


def stage_a(workers: int, run: bool) -> tuple[list[dict], dict]:
    """Cells that cannot be chosen are not run: every cell of the first (smallest) model runs; a cell of
    another model runs only if its estimated cost (the first model's seconds per epoch x its epochs x
    COST_RATIO) is below the cheapest qualifying cell's measured cost."""
    jobs = load_suite(HERE / "stage_a.yaml")
    first_model = jobs[0].model
    phase1 = [j for j in jobs if j.model == first_model]
    if run and run_jobs(phase1, workers):
        sys.exit("stage A: some runs failed (see their ablate.log)")
    rows, _ = _stage_a_rows(phase1)
    qualifying = [r["seconds"] for r in rows if r["qualifies"]]
    bar = min(qualifying) if qualifying else float("inf")
    per_epoch = statistics.fmean(r["seconds"] / r["epochs"] for r in rows)
    estimate = [(j, per_epoch * _cell_a(j)[1] * COST_RATIO.get(j.model, float("inf"))) for j in jobs if j not in phase1]
    phase2 = [j for j, cost in estimate if cost < bar]
    if run and phase2 and run_jobs(phase2, workers):
        sys.exit("stage A: some runs failed (see their ablate.log)")
    rows, chosen = _stage_a_rows(phase1 + phase2)
    pruned = {_cell_a(job): cost for job, cost in estimate if job not in phase2}
    rows += [{"model": m, "epochs": e, "skipped": True, "estimate": cost} for (m, e), cost in pruned.items()]
    rows.sort(key=lambda r: (r["model"], r["epochs"]))
    return rows, chosen


def _stage_a_rows(jobs) -> tuple[list[dict], dict | None]:
    cells: dict[tuple, list] = {}
    for job in jobs:
        if not job.run.is_done():
            continue
        m = job.run.manifest()
        epochs = float(job.overrides["warm_start.epochs"])
        cells.setdefault((job.model, epochs), []).append(
            {"seed": job.seed, **figures(read(job.run.path / "metrics.json")),
             "seconds": m.get("warm_start_seconds"), "path": job.run.path})
    rows = []
    for (model, epochs), runs in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        row = {"model": model, "epochs": epochs, "seeds": len(runs), "runs": runs,
               **{k: _mean([r[k] for r in runs]) for k in runs[0] if k not in ("seed", "path")}}
        row["qualifies"] = (row["qu"] >= 0.9 and row["iu"] >= 0.9 and min(r["qu"] for r in runs) >= 0.8
                            and min(r["iu"] for r in runs) >= 0.8 and row["acc_tail"] <= 0.9)
        rows.append(row)
    qualifying = [r for r in rows if r["qualifies"]]
    chosen = min(qualifying, key=lambda r: r["seconds"]) if qualifying else max(rows, key=lambda r: r["iu"], default=None)
    if chosen is not None:
        chosen["chosen"] = True
    return rows, chosen


# ---------------------------------------------------------------- stage B

def stage_b_suite(chosen: dict) -> Path:
    suite = yaml.safe_load((HERE / "stage_b.yaml").read_text())
    suite["models"] = [chosen["model"]]
    suite["overrides"]["warm_start.epochs"] = chosen["epochs"]
    path = ROOT / suite["output_dir"] / "stage_b.resolved.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def eval_checkpoint(job, step: int, threads: int = 1) -> Path:
    """A dev evaluation of one intermediate checkpoint of a stage-B run (its own run directory)."""
    checkpoint = job.run.path / "checkpoints" / f"checkpoint-{step}"
    out = ROOT / job.output_dir / "checkpoint-evals"
    cmd = [sys.executable, "-m", "she_bench.cli", "eval", "--model", str(checkpoint), "--seed", str(job.seed),
           "--split", "dev", "--output-dir", str(out), f"name={job.run.path.name}-step{step}", "eval.samples=4"]
    # one torch thread per parallel evaluation: more threads than cores slows every one of them several-fold
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        raise RuntimeError(f"evaluating {checkpoint} failed:\n{done.stderr[-2000:]}")
    run_line = next(line for line in done.stdout.splitlines() if line.startswith(("run: ", "already done: ")))
    return Path(run_line.split(": ", 1)[1])


def stage_b(chosen: dict, workers: int, run: bool) -> list[dict]:
    jobs = load_suite(stage_b_suite(chosen))
    if run:
        if run_jobs(jobs, workers):
            sys.exit("stage B: some runs failed (see their ablate.log)")
        todo = [(j, s) for j in jobs for s in CHECKPOINT_STEPS]
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda js: eval_checkpoint(*js, threads=threads), todo))
    warm = {r["seed"]: r for r in chosen["runs"]}
    cells: dict[tuple, list] = {}
    for job in jobs:
        if not job.run.is_done():
            continue
        log = read_jsonl(job.run.path / "train_log.jsonl")
        lr = float(job.overrides["train.lr"])
        for steps in (*CHECKPOINT_STEPS, job.run.cfg.train.max_steps):
            if steps == job.run.cfg.train.max_steps:
                metrics = job.run.path / "metrics.json"
            else:
                found = sorted((ROOT / job.output_dir / "checkpoint-evals" / "toyshop").glob(
                    f"{job.run.path.name}-step{steps}-*/metrics.json"))
                if not found:
                    continue
                metrics = found[0]
            cells.setdefault((job.recipe, lr, steps), []).append(
                {"seed": job.seed, **figures(read(metrics)), **training(log, steps)})
    rows = []
    for (method, lr, steps), runs in sorted(cells.items()):
        row = {"method": method, "lr": lr, "steps": steps, "seeds": len(runs),
               **{k: _mean([r[k] for r in runs]) for k in runs[0] if k != "seed"}}
        for key in ("f1", "acc_tail"):
            d = [r[key] - warm[r["seed"]][key] for r in runs if r["seed"] in warm]
            se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
            row[f"d_{key}"], row[f"se_{key}"] = _mean(d), se
            move = "up" if _mean(d) > 2 * se and _mean(d) > 0 else "down" if _mean(d) < -2 * se else "-"
            row[f"move_{key}"] = move + ("*" if se < 1e-3 and move != "-" else "")  # metrics carry 4 decimals
        row["reward_rises"] = row["reward_last"] is not None and row["reward_last"] > row["reward_first"]
        moves = {row["move_f1"].rstrip("*"), row["move_acc_tail"].rstrip("*")}
        row["moves_up"] = "up" in moves and "down" not in moves and row["reward_rises"]
        row["fits"] = steps <= RL_BUDGET_STEPS
        rows.append(row)
    return rows


def decide(rows: list[dict]) -> tuple[dict | None, str]:
    grpo = [r for r in rows if r["method"] == "grpo" and r["format_valid"] > 0.95]
    cheap = lambda r: (r["steps"], r["lr"])  # noqa: E731
    up = sorted([r for r in grpo if r["moves_up"]], key=cheap)
    if up:
        fitting = [r for r in up if r["fits"]]
        if fitting and fitting[0] is not up[0]:
            return fitting[0], (f"the cheapest cell where GRPO moves up ({up[0]['steps']} steps at lr {up[0]['lr']:g}) "
                                "does not fit the suite budget; the cheapest that fits was chosen")
        if fitting:
            return fitting[0], "the cheapest cell where GRPO moves up and format-valid stays above 0.95"
        return up[0], (f"GRPO moves up only in cells over the {RL_BUDGET_STEPS}-step budget estimate, so none meets the rule "
                       "and fits; the cheapest such cell was kept, and the suite's wall time is measured at it instead "
                       "(see 'Check on test' below)")
    if not grpo:
        return None, "no GRPO cell kept format-valid above 0.95"
    fitting = [r for r in grpo if r["fits"]] or grpo
    best = max(fitting, key=lambda r: (r["d_f1"], -r["steps"]))
    return best, ("RL did not improve on the warm start: no cell moves GRPO up by the rule; the default is the cell "
                  "where GRPO's dev macro-F1 moves least down")


# ---------------------------------------------------------------- report

def f(x, nd=3, signed=False):
    return "n/a" if x is None else (f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}")


def write_report(a_rows, chosen, b_rows, default, why) -> str:
    lines = ["# Calibration of the toyshop regime (dev split)", "",
             "Regenerate: `python benchmarks/calibration/calibrate.py --workers 2` (runs what is missing, then writes "
             "this file); the rules are in `benchmarks/calibration/README.md`, fixed before the sweep ran. Every figure "
             "is on the **dev** split (300 pairs, 57 of them tail), means over 2 seeds; 'sampled' is the mean accuracy of 4 "
             "outputs per prompt at the training temperature (1.0). Seconds are wall time on the shared 2-core CPU "
             "with 2 runs in parallel (and other work beside them): compare them with each other, not with a quiet "
             "machine.", "",
             "## Stage A: warm start", "",
             "| model | epochs | seeds | QU | IU | CM | AM | acc | macro-F1 | acc head | acc tail | sampled acc | "
             "format-valid | warm-start s | qualifies |", "|" + "---|" * 15]
    for r in a_rows:
        if r.get("skipped"):
            lines.append(f"| {r['model']} | {r['epochs']:g} | 0 | not run: estimated {r['estimate']:.0f} s, more than "
                         f"the chosen cell's {chosen['seconds']:.0f} s, so it could not be chosen |" + " |" * 11)
            continue
        lines.append(f"| {r['model']} | {r['epochs']:g} | {r['seeds']} | {f(r['qu'])} | {f(r['iu'])} | {f(r['cm'])} | "
                     f"{f(r['am'])} | {f(r['acc'])} | "
                     f"{f(r['f1'])} | {f(r['acc_head'])} | {f(r['acc_tail'])} | {f(r['sampled_acc'])} | "
                     f"{f(r['format_valid'])} | {f(r['seconds'], 0)} | {'yes' if r['qualifies'] else 'no'}"
                     f"{' **(chosen)**' if r.get('chosen') else ''} |")
    lines += ["", f"Chosen warm start: **{chosen['model']}, {chosen['epochs']:g} epochs**"
              + ("" if chosen["qualifies"] else " (no cell qualified: the one with the best item-understanding step)") + ".",
              "", "## Stage B: RL from that warm start", "",
              f"Warm start on dev (mean of seeds): acc {f(chosen['acc'])}, macro-F1 {f(chosen['f1'])}, tail acc "
              f"{f(chosen['acc_tail'])}, QU {f(chosen['qu'])}, IU {f(chosen['iu'])}, sampled acc {f(chosen['sampled_acc'])}.", "",
              "Δ is the mean over seeds of the paired difference from the warm start (same seed), ± its standard error "
              "over seeds; 'move' applies the rule (up/down: beyond 2 SE). With 2 seeds the SE comes from two "
              "differences: where they are equal it is 0 and any non-zero mean 'moves' (marked *), a weak signal that the "
              "3-seed check on test below has to confirm. Train s: training seconds up to that step (mean over seeds, from "
              "the training log; 2 runs shared the 2 cores).", "",
              "| method | lr | steps | reward first→last tenth | format-valid | acc | macro-F1 | acc head / tail | "
              "F1 head / tail | QU / IU | sampled acc | Δ macro-F1 | move | Δ tail acc | move | train s |",
              "|" + "---|" * 16]
    for r in b_rows:
        lines.append(
            f"| {r['method']} | {r['lr']:g} | {r['steps']} | {f(r['reward_first'])} → {f(r['reward_last'])} | "
            f"{f(r['format_valid'])} | {f(r['acc'])} | {f(r['f1'])} | {f(r['acc_head'])} / {f(r['acc_tail'])} | "
            f"{f(r['f1_head'])} / {f(r['f1_tail'])} | {f(r['qu'])} / {f(r['iu'])} | {f(r['sampled_acc'])} | "
            f"{f(r['d_f1'], signed=True)} ± {f(r['se_f1'])} | {r['move_f1']} | {f(r['d_acc_tail'], signed=True)} ± "
            f"{f(r['se_acc_tail'])} | {r['move_acc_tail']} | {f(r['seconds'], 0)} |")
    lines += ["", "## Decision", ""]
    if default is None:
        lines.append(f"No default could be chosen: {why}.")
    else:
        lines.append(f"New RL default: **lr {default['lr']:g}, {default['steps']} steps** (8 prompts x 8 rollouts) from "
                     f"the {chosen['model']} warm start of {chosen['epochs']:g} epochs: {why}.")
    return "\n".join(lines) + "\n"


def check_section() -> list[str]:
    """The chosen defaults on test, 3 seeds (benchmarks/calibration/check.yaml), when those runs exist."""
    runs: dict[str, list] = {}
    for job in load_suite(HERE / "check.yaml"):
        if job.run.is_done():
            m, log = job.run.manifest(), read_jsonl(job.run.path / "train_log.jsonl")
            runs.setdefault(job.recipe, []).append({"seed": job.seed, **figures(read(job.run.path / "metrics.json")),
                                                    **training(log, job.run.cfg.train.max_steps),
                                                    "wall": m.get("total_seconds"), "train_s": m.get("train_seconds")})
    if not runs:
        return []

    def ms(rows, key, nd=3):
        xs = [r[key] for r in rows if r[key] is not None]
        if not xs:
            return "n/a"
        return f(statistics.fmean(xs), nd) + (f" ± {statistics.stdev(xs):.{nd}f}" if len(xs) > 1 else "")

    lines = ["", "## Check on test: the new defaults, 3 seeds", "",
             "`she-bench ablate --suite benchmarks/calibration/check.yaml --workers 2`: the **test** split (2,000 pairs, "
             "1,000 tail), looked at only after the defaults above were fixed. Mean ± std over seeds. Wall s: the run's "
             "own time (warm start, training, evaluation) with 2 runs sharing the 2 cores; a seed's warm start is built "
             "once, by the warm-start run, and grpo's wall includes waiting for it (its train s does not).", "",
             "| recipe | seeds | reward first→last tenth | format-valid | acc | macro-F1 | acc head / tail | F1 head / tail | "
             "QU | IU | CM | AM | train s | wall s |", "|" + "---|" * 14]
    for recipe, rows in runs.items():
        lines.append(f"| {recipe} | {len(rows)} | {ms(rows, 'reward_first')} → {ms(rows, 'reward_last')} | "
                     f"{ms(rows, 'format_valid')} | {ms(rows, 'acc')} | {ms(rows, 'f1')} | {ms(rows, 'acc_head')} / "
                     f"{ms(rows, 'acc_tail')} | {ms(rows, 'f1_head')} / {ms(rows, 'f1_tail')} | {ms(rows, 'qu')} | "
                     f"{ms(rows, 'iu')} | {ms(rows, 'cm')} | {ms(rows, 'am')} | {ms(rows, 'train_s', 0)} | {ms(rows, 'wall', 0)} |")
    warm = {r["seed"]: r for r in runs.get("warm-start", [])}
    lines += ["", "Paired against the warm start of the same seed (mean ± standard error over seeds):", ""]
    for recipe, rows in runs.items():
        if recipe == "warm-start":
            continue
        parts = []
        for key, name in (("f1", "macro-F1"), ("acc_tail", "tail accuracy"), ("f1_tail", "tail macro-F1")):
            d = [r[key] - warm[r["seed"]][key] for r in rows if r["seed"] in warm]
            if len(d) > 1:
                parts.append(f"{name} {statistics.fmean(d):+.3f} ± {statistics.stdev(d) / math.sqrt(len(d)):.3f}")
        lines.append(f"- {recipe}: " + ", ".join(parts))
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--report-only", action="store_true", help="write the report from the runs present, run nothing")
    args = p.parse_args()
    os.chdir(ROOT)  # suites name output folders relative to the project root
    a_rows, chosen = stage_a(args.workers, run=not args.report_only)
    print(f"stage A: chosen warm start {chosen['model']} x {chosen['epochs']:g} epochs", flush=True)
    b_rows = stage_b(chosen, args.workers, run=not args.report_only)
    default, why = decide(b_rows)
    REPORT.write_text(write_report(a_rows, chosen, b_rows, default, why) + "\n".join(check_section()) + "\n")
    print(f"wrote {REPORT}: " + (f"lr {default['lr']:g}, {default['steps']} steps ({why})" if default else why))
    return 0


if __name__ == "__main__":
    sys.exit(main())
