"""Calibrate the toyshop testbed on dev: stage P (the train pool a warm start can learn the comparisons from)
and stage S (the rationale share that leaves headroom), by the rules in README.md beside this file; writes
their sections of reports/calibration.md.

    python benchmarks/calibration/testbed.py --workers 2
    python benchmarks/calibration/testbed.py --report-only     # rewrite the sections from the runs present

Resumable: every run is a she-bench run directory keyed by its config hash, skipped when done.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from sections import cell_rows, script_args, write_section
from she_bench.ablate import load_suite, run_jobs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARES = (0.05, 0.1, 0.2, 0.4)
CM, AM, RJ = "category_matching", "attribute_matching", "relevance_judgment"
MARGIN = 0.10
"""Stage P: how far above its ceiling each verdict must be."""
AUC_MIN, HEADROOM = 0.7, 0.05
"""Stage S: the AM verdict AUC a scarce warm start needs, and the headroom it must leave under the full share."""


def figures(metrics: dict) -> dict:
    o, sl = metrics["overall"], metrics["slices"]
    ceil = {s: (metrics.get("ceilings") or {}).get(s, {}).get("ceiling") for s in (CM, AM, RJ)}
    auc = {s: ((metrics.get("conditioning") or {}).get(s) or {}).get("auc") for s in (CM, AM, RJ)}
    return {
        "qu": o["step_accuracy"]["query_understanding"], "iu": o["step_accuracy"]["item_understanding"],
        "cm": o["verdict_accuracy"][CM], "am": o["verdict_accuracy"][AM], "acc": o["accuracy"]["value"],
        "f1": o["macro_f1"]["value"], "acc_head": sl["head"]["accuracy"]["value"], "acc_tail": sl["tail"]["accuracy"]["value"],
        "cm_ceiling": ceil[CM], "am_ceiling": ceil[AM], "acc_ceiling": ceil[RJ],
        "cm_auc": auc[CM], "am_auc": auc[AM], "acc_auc": auc[RJ], "format_valid": o["format_valid_rate"],
    }


def cells(jobs, keys) -> list[dict]:
    """One row per cell: the mean of each figure over its finished seeds, and the seeds' own figures."""
    def seed_figures(job):
        seconds = job.run.manifest().get("warm_start_seconds")
        return {**figures(json.loads((job.run.path / "metrics.json").read_text())), "seconds": seconds}

    return cell_rows(jobs, keys, seed_figures)


# ---------------------------------------------------------------- stage P

POOL, EPOCHS = "card.options.n_train", "warm_start.epochs"


def pool_qualifies(r: dict) -> bool:
    return (r["qu"] >= 0.9 and r["iu"] >= 0.9 and min(x["qu"] for x in r["runs"]) >= 0.8
            and min(x["iu"] for x in r["runs"]) >= 0.8 and r["cm"] >= r["cm_ceiling"] + MARGIN
            and r["am"] >= r["am_ceiling"] + MARGIN and r["acc"] >= r["acc_ceiling"] + MARGIN)


def stage_p(workers: int, run: bool) -> tuple[list[dict], dict | None]:
    """The pool cells; if none qualifies, the amended fallback (toy-1m, 20,000 pairs, 4 epochs); if that does not
    qualify either, the cell with the largest smallest margin, marked as not meeting the rule."""
    rows = []
    for suite in (HERE / "testbed_pool.yaml", fallback_suite()):
        jobs = load_suite(suite)
        if run and run_jobs(jobs, workers):
            sys.exit(f"stage P: some runs of {suite.name} failed (see their ablate.log)")
        for r in cells(jobs, (POOL, EPOCHS)):
            r["model"], r["qualifies"], r["pair_epochs"] = jobs[0].model, pool_qualifies(r), r[POOL] * r[EPOCHS]
            rows.append(r)
        if any(r["qualifies"] for r in rows):
            break
    ok = sorted((r for r in rows if r["qualifies"]), key=lambda r: (r["pair_epochs"], r[POOL]))
    chosen = ok[0] if ok else max(rows, key=smallest_margin, default=None)
    if chosen:
        chosen["chosen"] = True
    return rows, chosen


def smallest_margin(r: dict) -> float:
    return min(r[k] - r[k + "_ceiling"] for k in ("cm", "am", "acc"))


def fallback_suite() -> Path:
    suite = yaml.safe_load((HERE / "testbed_pool.yaml").read_text())
    suite.update(name="calibration-testbed-pool-more-epochs", grid={POOL: [20000], EPOCHS: [4]})
    path = ROOT / suite["output_dir"] / "testbed_pool_fallback.resolved.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


# ---------------------------------------------------------------- stage S

SHARE = "card.rationale_share"


def share_suite(chosen: dict) -> Path:
    suite = yaml.safe_load((HERE / "testbed_pool.yaml").read_text())
    suite["name"] = "calibration-testbed-share"
    suite.pop("grid")
    suite["overrides"].pop(SHARE)
    suite["overrides"][POOL] = chosen[POOL]
    suite["cells"] = [{SHARE: s, EPOCHS: round(chosen[EPOCHS] / s, 6)} for s in SHARES]
    path = ROOT / suite["output_dir"] / "testbed_share.resolved.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def share_qualifies(r: dict, full: dict) -> bool:
    return (r["qu"] >= 0.9 and r["iu"] >= 0.9 and r["am_auc"] is not None and r["am_auc"] >= AUC_MIN
            and r["acc"] <= full["acc"] - HEADROOM and r["am"] <= full["am"] - HEADROOM)


def stage_s(chosen: dict, workers: int, run: bool) -> tuple[list[dict], dict | None]:
    """Shares from the smallest up, each share's seeds run together; the first that qualifies is the default,
    so larger shares need not run."""
    jobs = load_suite(share_suite(chosen))
    rows, pick = [], None
    for share in SHARES:
        cell = [j for j in jobs if j.overrides[SHARE] == share]
        if run and run_jobs(cell, workers):
            sys.exit("stage S: some runs failed (see their ablate.log)")
        for r in cells(cell, (SHARE, EPOCHS)):
            r["qualifies"] = share_qualifies(r, chosen)
            rows.append(r)
            if r["qualifies"] and pick is None:
                pick = r
                pick["chosen"] = True
        if pick:
            break
    return rows, pick


# ---------------------------------------------------------------- report

def f(x, nd=3, signed=False):
    return "n/a" if x is None else (f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}")


def _verdict_cells(r: dict) -> str:
    return " | ".join(f"{f(r[k])} ({f(r[k] - r[k + '_ceiling'], signed=True) if r[k] is not None and r[k + '_ceiling'] is not None else 'n/a'})"
                      for k in ("cm", "am", "acc"))


HEADER = ("| QU | IU | CM verdict (− ceiling) | AM verdict (− ceiling) | label acc (− ceiling) | CM / AM / label AUC | "
          "acc head / tail | macro-F1 | warm-start s |")


def pool_section(rows: list[dict], chosen: dict | None) -> str:
    lines = ["## Testbed stage P: the train pool (toyshop 2, every rationale available)", "",
             "Regenerate: `python benchmarks/calibration/testbed.py --workers 2`; rules in "
             "`benchmarks/calibration/README.md` (committed before the sweep ran). Dev split, 1,000 pairs; toy-1m; "
             "means over 2 seeds. Ceilings are the dev verdict accuracy of a blind predictor fitted on the cell's own "
             "train split (item-blind for CM, attribute-blind for AM and the label); the rule asks for +0.10 on each. "
             "Warm-start seconds: wall time with 2 runs sharing the 2 cores.", "",
             "| model | n_train | epochs | pair-epochs | seeds " + HEADER + " qualifies |", "|" + "---|" * 15]
    for r in rows:
        lines.append(f"| {r['model']} | {r[POOL]:,} | {r[EPOCHS]:g} | {r['pair_epochs']:,.0f} | {r['seeds']} | {f(r['qu'])} | {f(r['iu'])} | "
                     f"{_verdict_cells(r)} | {f(r['cm_auc'])} / {f(r['am_auc'])} / {f(r['acc_auc'])} | "
                     f"{f(r['acc_head'])} / {f(r['acc_tail'])} | {f(r['f1'])} | {f(r['seconds'], 0)} | "
                     f"{'yes' if r['qualifies'] else 'no'}{' **(chosen)**' if r.get('chosen') else ''} |")
    lines.append("")
    if chosen and chosen["qualifies"]:
        lines.append(f"Chosen pool: **{chosen[POOL]:,} train pairs, {chosen[EPOCHS]:g} warm-start epochs** "
                     f"({chosen['pair_epochs']:,.0f} pair-epochs), the qualifying cell with the fewest pair-epochs.")
    elif chosen:
        lines.append(f"**No cell qualifies.** By the amended rule the pool is the cell with the largest smallest margin: "
                     f"**{chosen[POOL]:,} train pairs, {chosen[EPOCHS]:g} warm-start epochs** (smallest margin "
                     f"{smallest_margin(chosen):+.3f}). It does **not** meet the rule: " + "; ".join(
                         f"{name} {chosen[k]:.3f} against a bar of {chosen[k + '_ceiling'] + MARGIN:.3f}"
                         for k, name in (("cm", "CM verdict"), ("am", "AM verdict"), ("acc", "label accuracy"))
                         if chosen[k] < chosen[k + "_ceiling"] + MARGIN) + ".")
    return "\n".join(lines)


def share_section(rows: list[dict], full: dict, pick: dict | None) -> str:
    lines = ["## Testbed stage S: the rationale share", "",
             f"From the chosen pool ({full[POOL]:,} pairs), each share's warm start gets the full share's optimizer "
             f"steps (epochs = {full[EPOCHS]:g} / share). A share qualifies with QU and IU at least 0.9, an AM verdict "
             f"AUC of at least {AUC_MIN}, and label accuracy and AM verdict each at least {HEADROOM} below the full "
             "share's; the default is the smallest that qualifies. Dev split; means over 2 seeds.", "",
             "| share | rationales | epochs | seeds " + HEADER + " qualifies |", "|" + "---|" * 14,
             f"| 1.0 (stage P) | {full[POOL]:,} | {full[EPOCHS]:g} | {full['seeds']} | {f(full['qu'])} | {f(full['iu'])} | "
             f"{_verdict_cells(full)} | {f(full['cm_auc'])} / {f(full['am_auc'])} / {f(full['acc_auc'])} | "
             f"{f(full['acc_head'])} / {f(full['acc_tail'])} | {f(full['f1'])} | {f(full['seconds'], 0)} | (upper bound) |"]
    for r in rows:
        lines.append(f"| {r[SHARE]:g} | {round(r[SHARE] * full[POOL]):,} | {r[EPOCHS]:g} | {r['seeds']} | {f(r['qu'])} | "
                     f"{f(r['iu'])} | {_verdict_cells(r)} | {f(r['cm_auc'])} / {f(r['am_auc'])} / {f(r['acc_auc'])} | "
                     f"{f(r['acc_head'])} / {f(r['acc_tail'])} | {f(r['f1'])} | {f(r['seconds'], 0)} | "
                     f"{'yes' if r['qualifies'] else 'no'}{' **(chosen)**' if r.get('chosen') else ''} |")
    lines.append("")
    unrun = [s for s in SHARES if s > (pick or {}).get(SHARE, 1.0)]
    if pick and unrun:
        lines.append(f"Shares {', '.join(f'{s:g}' for s in unrun)} were not run: shares are tried from the smallest "
                     "up, and the smallest that qualifies is the default.")
    if pick:
        lines.append(f"Default `rationale_share`: **{pick[SHARE]:g}** ({round(pick[SHARE] * full[POOL]):,} rationales, "
                     f"warm start {pick[EPOCHS]:g} epochs). Headroom on dev (full share − this share): label accuracy "
                     f"{f(full['acc'] - pick['acc'], signed=True)}, AM verdict {f(full['am'] - pick['am'], signed=True)}, "
                     f"tail accuracy {f(full['acc_tail'] - pick['acc_tail'], signed=True)}.")
    else:
        lines.append("**No share qualifies**: the default stays 1.0; the sweep above is the record.")
    return "\n".join(lines)


def main() -> int:
    args = script_args(__doc__)
    rows, chosen = stage_p(args.workers, run=not args.report_only)
    write_section("testbed-pool", pool_section(rows, chosen))
    print("stage P: " + (f"{chosen[POOL]} pairs x {chosen[EPOCHS]:g} epochs" if chosen else "no cell qualifies"), flush=True)
    if chosen is None:
        return 1
    share_rows, pick = stage_s(chosen, args.workers, run=not args.report_only)
    write_section("testbed-share", share_section(share_rows, chosen, pick))
    print("stage S: " + (f"rationale_share {pick[SHARE]:g}" if pick else "no share qualifies"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
