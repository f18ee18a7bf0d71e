"""Build an ablation report from run directories: tables (Markdown, CSV, LaTeX), plots, one HTML
page and the numbers as JSON. The same run directories always give byte-identical files."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from she_bench.report import aggregate as agg
from she_bench.report import tables as tb
from she_bench.report.collect import NothingToReport, RunData, collect, group
from she_bench.report.html import page
from she_bench.report.plots import PLOTS, write_plots

TABLE_FILES = ("summary", "comparisons", "power", "legend", "slices", "steps", "verdicts", "grm", "entropy")
"""Each is written as <name>.md, <name>.csv and <name>.tex."""


def _provenance(run: RunData) -> dict:
    m = run.manifest
    git = m.get("git") or {}
    return {
        "path": run.rel, "benchmark": run.benchmark, "variant": run.name, "method": run.method, "model": run.model,
        "seed": run.seed, "config_hash": m.get("config_hash"), "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"), "data_hash": m.get("data_hash"), "base_model_hash": m.get("base_model_hash"),
        "warm_start_hash": m.get("warm_start_hash"),
        "final_model_hash": m.get("final_model_hash") or m.get("model_hash"),
        "versions": {k: (m.get("versions") or {}).get(k) for k in ("python", "torch", "transformers", "trl")},
        "total_seconds": m.get("total_seconds", m.get("eval_seconds")), "train_seconds": m.get("train_seconds"),
        "eval_seconds": m.get("eval_seconds"), "split": run.metrics.get("split"),
    }


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def build_report(run_dirs: list[Path], out_dir: Path, baseline: str = "grpo", n_boot: int = 10_000, seed: int = 0,
                 command: str | list[str] | None = None, primary: list | None = None) -> dict:
    """Report on `run_dirs` (run directories, or folders searched for them) into `out_dir`.

    Only runs whose manifest status is "done" are reported (the others are listed with the reason; with none
    left, NothingToReport is raised before anything is written);
    runs are grouped into variants by (benchmark, name), seeds being the replicates. `primary` lists the
    (variant, versus) comparisons declared in advance (Holm within them); every other variant is compared
    with `baseline` as exploratory. Intervals and p-values come from report.stats.crossed (seeds and
    queries, a query bootstrap of `n_boot` resamples drawn with `seed`).
    `command` (optional) is shown in the HTML header. Returns the numbers written to report.json,
    with ``files``: every file written, sorted.
    """
    if isinstance(command, (list, tuple)):
        command = shlex.join(str(c) for c in command)
    runs, skipped = collect([Path(p) for p in run_dirs])
    if not runs:
        where = ", ".join(map(str, run_dirs))
        raise NothingToReport(f"no finished run to report in {where}: " + (
            f"{len(skipped)} run director{'y' if len(skipped) == 1 else 'ies'} skipped" if skipped
            else "no run directory found"), skipped)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group(runs)
    keys = agg.ordered_keys(groups, baseline)

    summary = agg.summary_rows(groups, keys, n_boot, seed)
    comparisons, comparison_notes = agg.comparison_rows(groups, keys, baseline, primary or [], n_boot, seed)
    power = agg.power_rows(comparisons)
    legend = agg.legend_rows(groups, keys)
    slices = agg.slice_rows(groups, keys)
    steps = agg.step_rows(groups, keys)
    entropy = agg.entropy_rows(groups, keys)
    grm = agg.grm_rows(groups, keys)
    prov = [_provenance(r) for r in sorted(runs, key=lambda r: r.rel)]
    skipped_rows = [{"path": s.rel, "status": s.status, "reason": s.reason} for s in skipped]

    tables = {
        "summary": tb.summary_table(summary),
        "comparisons": tb.comparisons_table(comparisons, comparison_notes, n_boot),
        "power": tb.power_table(power),
        "legend": tb.legend_table(legend),
        "slices": tb.slices_table(slices),
        "steps": tb.steps_table(steps),
        "verdicts": tb.verdicts_table(steps),
        "grm": tb.grm_table(grm),
        "entropy": tb.entropy_table(entropy),
    }
    if power:
        tables["summary"].notes.insert(0, "Power: " + tb.power_line(power))
    prov_table, skipped_table = tb.provenance_table(prov), tb.skipped_table(skipped_rows)

    files = []
    for name in TABLE_FILES:
        t = tables[name]
        for ext, text in (("md", t.markdown("#")), ("csv", t.csv()), ("tex", t.latex())):
            _write(out_dir / f"{name}.{ext}", text)
            files.append(f"{name}.{ext}")
    _write(out_dir / "provenance.md", prov_table.markdown("#") + "\n" + skipped_table.markdown("#"))
    files.append("provenance.md")
    files += write_plots(out_dir, groups, keys, summary, steps)

    header = {"benchmarks": sorted({k[0] for k in keys}), "variants": [(k[0], k[1], [r.seed for r in groups[k]])
                                                                       for k in keys],
              "n_runs": len(runs), "n_skipped": len(skipped), "baseline": baseline, "command": command,
              "n_primary": sum(r["family"] == "primary" for r in comparisons),
              "power": tb.power_line(power) if power else ""}
    sections = [
        ("Summary", [tables["summary"], "head_tail.png"]),
        ("Comparisons", [tables["comparisons"], tables["power"]]),
        ("Legend", [tables["legend"]]),
        ("Slices", [tables["slices"]]),
        ("Reasoning steps", [tables["steps"], "step_accuracy.png", "first_wrong_step.png"]),
        ("Verdicts and shortcut ceilings", [tables["verdicts"], "verdicts.png"]),
        ("GRM quality", [tables["grm"]]),
        ("Entropy and reward", [tables["entropy"], "entropy_curves.png", "reward_curves.png"]),
        ("Provenance", [prov_table, skipped_table]),
    ]
    _write(out_dir / "index.html", page(header, sections, out_dir, PLOTS))
    files.append("index.html")
    files.append("report.json")

    report = {
        "baseline": baseline, "n_boot": n_boot, "seed": seed, "command": command,
        "benchmarks": header["benchmarks"],
        "variants": [{"benchmark": b, "variant": n, "seeds": s} for b, n, s in header["variants"]],
        "primary": [list(p) for p in primary or []], "power": power, "legend": legend,
        "summary": summary, "comparisons": comparisons, "comparison_notes": comparison_notes, "slices": slices,
        "steps": steps, "grm": grm, "entropy": entropy, "runs": prov, "skipped": skipped_rows, "files": sorted(files),
    }
    _write(out_dir / "report.json", json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return report
