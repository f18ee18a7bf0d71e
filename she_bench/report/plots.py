"""Report plots (PNG, matplotlib's Agg canvas, no pyplot state): byte-identical for the same numbers.

One panel per benchmark; a variant keeps its colour in every plot.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from she_bench.data.schema import STEPS
from she_bench.report.aggregate import curve
from she_bench.report.tables import STEP_ABBR

PLOTS = {
    "entropy_curves.png": "Training token entropy per step (method stages only, curriculum stages end to end), "
                          "mean over seeds.",
    "reward_curves.png": "Mean reward per training step (method stages only), mean over seeds.",
    "head_tail.png": "Accuracy on the head and tail slices, mean over seeds with 95% intervals "
                     "over seeds and queries, as in the summary (one seed: over queries alone).",
    "step_accuracy.png": "Per-step accuracy against the offline verifier, mean over seeds; black dashes: the shortcut "
                         "ceiling of the step's verdict (a blind predictor's verdict accuracy).",
    "verdicts.png": "Verdict accuracy of category matching, attribute matching and the label, mean over seeds; black "
                    "dashes: the shortcut ceiling (a predictor blind to what the step compares).",
    "first_wrong_step.png": "Where the first wrong step falls: share of checked chains, mean over seeds.",
}
_RC = {"svg.hashsalt": "she-bench", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}


def _colors(names: list[str]) -> dict[str, tuple]:
    cmap = colormaps["tab10"] if len(names) <= 10 else colormaps["tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _figure(n_panels: int, width: float = 7.5, height: float = 3.2) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height * n_panels), dpi=100, layout="constrained")
    axes = fig.subplots(n_panels, 1, squeeze=False)[:, 0]
    return fig, list(axes)


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png", metadata={"Software": None})


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _benches(keys) -> list[str]:
    return sorted({k[0] for k in keys})


def curves_plot(path: Path, groups: dict, keys: list, field: str, ylabel: str, colors: dict) -> None:
    benches = _benches(keys)
    fig, axes = _figure(max(1, len(benches)))
    for ax, bench in zip(axes, benches or [""]):
        drawn = False
        for key in (k for k in keys if k[0] == bench):
            c = curve(groups[key], field)
            if c is None:
                continue
            ax.plot(c[0], c[1], label=key[1], color=colors[key[1]], linewidth=1.2)
            drawn = True
        ax.set_title(bench or "no runs", loc="left")
        if drawn:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("training step")
            ax.set_ylabel(ylabel)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        else:
            _empty(ax, f"no {ylabel} logged")
    _save(fig, path)


def _grouped_bars(ax, groups: list[str], series: list[tuple[str, list, list | None]], colors: dict) -> None:
    """Bars at each group for each series (label, heights, yerr (2, n) or None); NaN = no bar."""
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for i, (label, heights, yerr) in enumerate(series):
        h = np.array([np.nan if v is None else v for v in heights], dtype=float)
        err = None if yerr is None else np.nan_to_num(np.array(yerr, dtype=float))
        ax.bar(x - 0.4 + width * (i + 0.5), h, width, yerr=err, label=label,
               color=colors.get(label), capsize=2, error_kw={"linewidth": 0.8})
    long_labels = len(groups) > 4 and max((len(str(g)) for g in groups), default=0) > 6
    ax.set_xticks(x, groups, rotation=35 if long_labels else 0, ha="right" if long_labels else "center")
    ax.set_ylim(0, 1.05)


def _err(s: dict) -> tuple[float, float]:
    if s["mean"] is None or s["lo"] is None:
        return 0.0, 0.0
    return max(0.0, s["mean"] - s["lo"]), max(0.0, s["hi"] - s["mean"])


def head_tail_plot(path: Path, summary: list[dict], colors: dict) -> None:
    benches = sorted({r["benchmark"] for r in summary})
    fig, axes = _figure(max(1, len(benches)))
    slice_colors = {"head": "#4c72b0", "tail": "#dd8452"}
    for ax, bench in zip(axes, benches or [""]):
        rows = [r for r in summary if r["benchmark"] == bench]
        if not rows:
            _empty(ax, "no runs")
            continue
        series = []
        for sl in ("head", "tail"):
            stats = [r["accuracy"][sl] for r in rows]
            errs = [_err(s) for s in stats]
            series.append((sl, [s["mean"] for s in stats], [[e[0] for e in errs], [e[1] for e in errs]]))
        _grouped_bars(ax, [r["variant"] for r in rows], series, slice_colors)
        ax.set_title(bench, loc="left")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, path)


def step_plot(path: Path, steps: list[dict], colors: dict, first_wrong: bool) -> None:
    benches = sorted({r["benchmark"] for r in steps})
    fig, axes = _figure(max(1, len(benches)))
    cats = [*STEPS, "none"] if first_wrong else list(STEPS)
    for ax, bench in zip(axes, benches or [""]):
        rows = [r for r in steps if r["benchmark"] == bench]
        if not rows:
            _empty(ax, "no runs")
            continue
        key = "first_wrong_step" if first_wrong else "step_accuracy"
        series = [(r["variant"], [r[key][c]["mean"] for c in cats], None) for r in rows]
        if all(v is None for _, h, _ in series for v in h):
            _empty(ax, "no checked steps")
            ax.set_title(bench, loc="left")
            continue
        _grouped_bars(ax, [STEP_ABBR.get(c, c) for c in cats], series, colors)
        if not first_wrong:
            _ceiling_marks(ax, list(range(len(cats))), _bench_ceilings(rows, cats))
        ax.set_title(bench, loc="left")
        ax.set_ylabel("share of checked chains" if first_wrong else "step accuracy")
        ax.set_xlabel("first wrong step" if first_wrong else "reasoning step")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, path)


def _ceiling_marks(ax, positions: list[float], ceilings: list[float | None]) -> None:
    """A black dashed line over each group whose verdict has a ceiling (one legend entry)."""
    labelled = False
    for x, c in zip(positions, ceilings):
        if c is not None:
            ax.hlines(c, x - 0.45, x + 0.45, colors="black", linestyles="dashed", linewidth=1.2,
                      label=None if labelled else "shortcut ceiling")
            labelled = True


def _bench_ceilings(rows: list[dict], steps) -> list[float | None]:
    """The ceiling of each step (the same for every variant of a benchmark's split: the first that has one)."""
    out = []
    for s in steps:
        found = [r["ceiling"][s]["mean"] for r in rows
                 if s in r.get("ceiling", {}) and r["ceiling"][s]["mean"] is not None]
        out.append(found[0] if found else None)
    return out


def verdict_plot(path: Path, steps: list[dict], colors: dict) -> None:
    from she_bench.reasoning.verdicts import VERDICT_STEPS
    from she_bench.report.tables import VERDICT_TITLES

    benches = sorted({r["benchmark"] for r in steps})
    fig, axes = _figure(max(1, len(benches)))
    for ax, bench in zip(axes, benches or [""]):
        rows = [r for r in steps if r["benchmark"] == bench]
        ax.set_title(bench or "no runs", loc="left")
        acc = lambda r, s: (r["label_accuracy"] if s == "relevance_judgment" else r["verdict_accuracy"][s])["mean"]  # noqa: E731
        series = [(r["variant"], [acc(r, s) for s in VERDICT_STEPS], None) for r in rows]
        if not rows or all(v is None for _, h, _ in series for v in h):
            _empty(ax, "no verdicts")
            continue
        _grouped_bars(ax, [VERDICT_TITLES[s] for s in VERDICT_STEPS], series, colors)
        _ceiling_marks(ax, list(range(len(VERDICT_STEPS))), _bench_ceilings(rows, VERDICT_STEPS))
        ax.set_ylabel("verdict accuracy")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, path)


def write_plots(out_dir: Path, groups: dict, keys: list, summary: list[dict], steps: list[dict]) -> list[str]:
    """All plots into out_dir; returns their file names (the keys of PLOTS)."""
    from matplotlib import rc_context

    names = list(dict.fromkeys(k[1] for k in keys))
    colors = _colors(names)
    with rc_context(_RC):
        curves_plot(out_dir / "entropy_curves.png", groups, keys, "entropy", "token entropy", colors)
        curves_plot(out_dir / "reward_curves.png", groups, keys, "reward_mean", "mean reward", colors)
        head_tail_plot(out_dir / "head_tail.png", summary, colors)
        step_plot(out_dir / "step_accuracy.png", steps, colors, first_wrong=False)
        step_plot(out_dir / "first_wrong_step.png", steps, colors, first_wrong=True)
        verdict_plot(out_dir / "verdicts.png", steps, colors)
    return list(PLOTS)
