"""Choose DPO's learning rate, beta and steps on dev by the rule in README.md beside this file, and write
the `dpo` section of reports/calibration.md.

    python benchmarks/calibration/dpo.py --workers 2
    python benchmarks/calibration/dpo.py --report-only     # rewrite the section from the runs present
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sections import cell_rows, script_args, write_section
from she_bench.ablate import load_suite, run_jobs

HERE = Path(__file__).resolve().parent
KEYS = ("train.lr", "train.dpo_beta", "train.max_steps")
VALID = 0.95


def figures(job) -> dict:
    m = json.loads((job.run.path / "metrics.json").read_text())
    o = m["overall"]
    manifest = job.run.manifest()
    return {"f1": o["macro_f1"]["value"], "acc": o["accuracy"]["value"],
            "f1_tail": m["slices"]["tail"]["macro_f1"]["value"], "format_valid": o["format_valid_rate"],
            "pairs": manifest.get("dpo_pairs"), "gold_chosen": manifest.get("dpo_pairs_with_gold_chosen"),
            "train_s": manifest.get("train_seconds")}


def rows(jobs) -> list[dict]:
    out = cell_rows(jobs, KEYS, figures)
    for c in out:
        c.update(lr=c["train.lr"], beta=c["train.dpo_beta"], steps=c["train.max_steps"],
                 eligible=all(r["format_valid"] >= VALID for r in c["runs"]))
    return out


def decide(cells: list[dict]) -> dict | None:
    eligible = [c for c in cells if c["eligible"]]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (-round(c["f1"], 3), c["steps"], c["lr"], c["beta"]))


def f(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def section(cells: list[dict], chosen: dict | None) -> str:
    lines = ["## DPO at its own rate", "",
             "Regenerate: `python benchmarks/calibration/dpo.py --workers 2`; rule in `benchmarks/calibration/README.md` "
             "(committed before the sweep ran). Dev split (1,000 pairs), from the default warm start, 1,200 preference "
             "pairs asked for (8 per step); means over seeds; format-valid also as its lowest seed. Pairs: the pairs "
             "built (prompts without a wrong sample give none); gold chosen: pairs whose chosen side is the gold "
             "rationale (no right sample).", "",
             "| lr | beta | steps | seeds | format-valid (min) | acc | macro-F1 | tail macro-F1 | pairs | gold chosen | "
             "train s | eligible |", "|" + "---|" * 12]
    for c in cells:
        low = min(r["format_valid"] for r in c["runs"])
        lines.append(f"| {c['lr']:g} | {c['beta']:g} | {c['steps']} | {c['seeds']} | {f(c['format_valid'])} ({f(low)}) | "
                     f"{f(c['acc'])} | {f(c['f1'])} | {f(c['f1_tail'])} | {f(c['pairs'], 0)} | {f(c['gold_chosen'], 0)} | "
                     f"{f(c['train_s'], 0)} | {'yes' if c['eligible'] else 'no'}{' **(chosen)**' if c is chosen else ''} |")
    lines.append("")
    if chosen:
        lines.append(f"Chosen: **lr {chosen['lr']:g}, beta {chosen['beta']:g}, {chosen['steps']} steps**: the eligible cell "
                     f"with the highest dev macro-F1 ({f(chosen['f1'])}); now the `dpo` recipe's defaults.")
    else:
        lines.append(f"**No cell keeps format-valid at {VALID} or above in every seed**: none is chosen and the recipe "
                     "keeps its settings.")
    return "\n".join(lines)


def main() -> int:
    args = script_args(__doc__)
    jobs = load_suite(HERE / "dpo.yaml")
    if not args.report_only and run_jobs(jobs, args.workers):
        sys.exit("dpo: some runs failed (see their ablate.log)")
    cells = rows(jobs)
    chosen = decide(cells)
    write_section("dpo", section(cells, chosen))
    print("dpo: " + (f"lr {chosen['lr']:g}, beta {chosen['beta']:g}, {chosen['steps']} steps" if chosen else "no cell eligible"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
