"""Report tables: one `Table` rendered as GitHub Markdown, CSV, LaTeX (plain tabular) and HTML.

Display cells use 3 decimals (``mean ± std [lo, hi]``), CSV cells 4 decimals with a stat split into
``<key>_mean, <key>_std, <key>_lo, <key>_hi``; a missing value is ``n/a`` everywhere, never 0.
"""
from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass, field

from she_bench.data.schema import STEPS
from she_bench.evaluation.entropy import COLLAPSE_RATIO
from she_bench.report.aggregate import (
    HEADLINE,
    LABEL_METRICS,
    STEP_ABBR,
    SUMMARY_SUBSETS,
)

NA = "n/a"
_NUMERIC = re.compile(r"^(n/a|[0-9][0-9.,/ -]*)$")
METRIC_TITLES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "good_f1": "Good-F1"}
STEP_LEGEND = ", ".join(f"{a} = {s.replace('_', ' ')}" for s, a in STEP_ABBR.items())
VERDICT_TITLES = {"category_matching": "CM", "attribute_matching": "AM", "relevance_judgment": "Label"}


def fnum(x, digits: int = 3, signed: bool = False) -> str:
    if x is None:
        return NA
    s = f"{float(x):+.{digits}f}" if signed else f"{float(x):.{digits}f}"
    return f"{0:.{digits}f}" if float(s) == 0 else s  # never "-0.000"


@dataclass(frozen=True)
class Num:
    value: float | None
    digits: int = 3
    signed: bool = False

    def text(self) -> str:
        return fnum(self.value, self.digits, self.signed)

    def csv(self, key: str) -> dict:
        return {key: fnum(self.value, 4 if self.digits >= 3 else self.digits, self.signed)}


@dataclass(frozen=True)
class Stat:
    """A stat dict from aggregate.stat: ``mean ± std [lo, hi]``."""

    s: dict
    signed: bool = False
    ci: bool = True

    def text(self) -> str:
        s = self.s
        if s.get("mean") is None:
            return NA
        out = fnum(s["mean"], signed=self.signed)
        if s.get("std") is not None:
            out += " ± " + fnum(s["std"])
        if self.ci and s.get("lo") is not None:
            out += f" [{fnum(s['lo'], signed=self.signed)}, {fnum(s['hi'], signed=self.signed)}]"
        return out

    def csv(self, key: str) -> dict:
        parts = ("mean", "std", "lo", "hi") if self.ci else ("mean", "std")
        return {f"{key}_{p}": fnum(self.s.get(p), 4, self.signed and p != "std") for p in parts}


@dataclass(frozen=True)
class PValue:
    value: float | None
    star: bool = False
    """Mark the value as significant (Holm-adjusted p < 0.05)."""

    def text(self) -> str:
        if self.value is None:
            return NA
        out = "<0.001" if self.value < 0.001 else fnum(self.value)
        return out + (" *" if self.star else "")

    def csv(self, key: str) -> dict:
        return {key: "n/a" if self.value is None else f"{self.value:.6f}"}


def _text(cell) -> str:
    return cell if isinstance(cell, str) else cell.text()


def _csv(cell, key: str) -> dict:
    return {key: cell} if isinstance(cell, str) else cell.csv(key)


@dataclass
class Table:
    name: str
    """File stem: summary, vs_baseline, ..."""
    title: str
    caption: str
    columns: list[tuple[str, str]]
    """(CSV key, display label)."""
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _numeric(self) -> list[bool]:
        """Right-align a column whose cells are all numbers (or counts such as "2", "140-150", "0/2")."""
        return [bool(self.rows) and all(not isinstance(r[i], str) or _NUMERIC.match(r[i]) for r in self.rows)
                for i in range(len(self.columns))]

    def markdown(self, heading: str = "###") -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|")

        lines = [f"{heading} {self.title}", "", self.caption, ""]
        if self.rows:
            lines.append("| " + " | ".join(esc(label) for _, label in self.columns) + " |")
            lines.append("|" + "|".join("---:" if n else "---" for n in self._numeric()) + "|")
            lines.extend("| " + " | ".join(esc(_text(c)) for c in row) + " |" for row in self.rows)
        else:
            lines.append("_No rows._")
        if self.notes:
            lines.append("")
            lines.extend(f"- {n}" for n in self.notes)
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        keys: list[str] = []
        records = []
        for row in self.rows:
            rec = {}
            for (key, _), cell in zip(self.columns, row):
                rec.update(_csv(cell, key))
            records.append(rec)
            keys.extend(k for k in rec if k not in keys)
        if not records:
            keys = [k for k, _ in self.columns]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n", restval=NA)
        w.writeheader()
        w.writerows(records)
        return buf.getvalue()

    def latex(self) -> str:
        align = "".join("r" if n else "l" for n in self._numeric()) if self.rows else "l" * len(self.columns)
        out = [f"% she-bench report: {tex(self.title)}", "\\begin{table}[ht]", "\\centering",
               f"\\caption{{{tex(self.caption)}}}", f"\\label{{tab:she-bench-{self.name.replace('_', '-')}}}",
               f"\\begin{{tabular}}{{{align}}}", "\\hline",
               " & ".join(tex(label) for _, label in self.columns) + " \\\\", "\\hline"]
        out.extend(" & ".join(tex(_text(c)) for c in row) + " \\\\" for row in self.rows)
        out += ["\\hline", "\\end{tabular}"]
        out.extend(f"\\par\\smallskip\\footnotesize {tex(n)}" for n in self.notes)
        out.append("\\end{table}")
        return "\n".join(out) + "\n"

    def html(self) -> str:
        numeric = self._numeric()
        out = [f'<table id="table-{self.name}">', f"<caption><b>{html.escape(self.title)}.</b> "
               f"{html.escape(self.caption)}</caption>", "<thead><tr>"]
        out.extend(f"<th>{html.escape(label)}</th>" for _, label in self.columns)
        out.append("</tr></thead><tbody>")
        for row in self.rows:
            cells = "".join(f'<td class="num">{html.escape(_text(c))}</td>' if numeric[i]
                            else f"<td>{html.escape(_text(c))}</td>" for i, c in enumerate(row))
            out.append(f"<tr>{cells}</tr>")
        out.append("</tbody></table>")
        if self.notes:
            out.append("<ul class=\"notes\">" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ul>")
        return "\n".join(out) + "\n"


_TEX = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_", "{": "\\{",
        "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "±": "$\\pm$", "Δ": "$\\Delta$",
        "<": "$<$", ">": "$>$", "−": "$-$", "–": "--"}


def tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


# ---------------------------------------------------------------- the report's tables

_BENCH = ("benchmark", "Benchmark")
_VARIANT = ("variant", "Variant")


def _seeds(seeds) -> str:
    return ", ".join(str(s) for s in seeds) if seeds else NA


def _n(ns: list[int]) -> str:
    if not ns:
        return NA
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


def summary_table(rows: list[dict]) -> Table:
    cols = [_BENCH, _VARIANT, ("seeds", "Seeds"), ("n_seeds", "n seeds"), ("n_examples", "n examples")]
    for metric in LABEL_METRICS:
        for subset in SUMMARY_SUBSETS:
            key = metric if subset == "overall" else f"{metric}_{subset}"
            label = METRIC_TITLES[metric] + ("" if subset == "overall" else f" ({subset})")
            cols.append((key, label))
    cols += [("format_valid_rate", "Format-valid"), ("mean_entropy", "Mean entropy"), ("grm", "GRM"),
             ("budget", "Budget")]
    table = Table("summary", "Summary", (
        "One row per variant (runs grouped by benchmark and name; seeds are replicates). Cells: mean ± std over "
        "seeds [95% interval over seeds and queries: seed variance plus the query variance the seeds share, "
        "t on seeds - 1 df (she_bench/report/stats.py), clipped to [0, 1]; with one seed, the query variance "
        "alone]. Head and tail are the "
        "benchmark's slices. Budget (mean over seeds, the method after the shared warm start): optimizer steps, "
        "prompts seen, tokens generated (rollouts, offline samples), tokens through the trainer, wall seconds "
        "of the whole run; in brackets the warm start's own steps and trained tokens, in runs that trained it "
        "(a cached warm start is counted by the run that trained it). "
        "Format-valid: share of outputs that parse; mean entropy: mean token entropy of the policy on the eval "
        "prompts. GRM: the generative stepwise reward model behind the row's step rewards (oracle = ground truth "
        "with verdicts flipped at the error rate shown; n/a: no GRM in the reward)."), cols)
    for r in rows:
        cells = [r["benchmark"], r["variant"], _seeds(r["seeds"]), str(r["n_seeds"]), _n(r["n_examples"])]
        cells += [Stat(r[m][s]) for m in LABEL_METRICS for s in SUMMARY_SUBSETS]
        cells += [Stat(r["format_valid_rate"], ci=False), Stat(r["mean_entropy"], ci=False), r["grm"] or NA,
                  Budget(r["budget"])]
        table.rows.append(cells)
    return table


def _count(x) -> str:
    if x is None:
        return NA
    x = float(x)
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k" if x >= 1e4 else f"{x:.0f}"


@dataclass(frozen=True)
class Budget:
    """A budget_stat: ``150 st · 1200 pr · 0.61M gen · 96k tr · 240 s`` (means over seeds)."""

    b: dict

    def text(self) -> str:
        m = {k: v.get("mean") for k, v in self.b.items()}
        text = (f"{_count(m['optimizer_steps'])} st · {_count(m['prompts_seen'])} pr · "
                f"{_count(m['tokens_generated'])} gen · "
                f"{_count(m['tokens_trained'])} tr · {_count(m['total_seconds'])} s")
        if m.get("warm_start_steps"):
            text += f" (warm start: {_count(m['warm_start_steps'])} st · {_count(m['warm_start_tokens_trained'])} tr)"
        return text

    def csv(self, key: str) -> dict:
        return {f"{key}_{k}": fnum(v.get("mean"), 1) for k, v in self.b.items()}


def grm_table(rows: list[dict]) -> Table:
    from she_bench.rewards.judge_quality import MIN_WRONG

    cols = [_BENCH, _VARIANT, ("grm", "GRM"), ("source", "Judged"), ("n_seeds", "n seeds"), ("threshold", "Threshold")]
    for s in STEPS:
        cols += [(f"{s}_auroc", f"{STEP_ABBR[s]} AUROC"), (f"{s}_f1_wrong", f"{STEP_ABBR[s]} F1")]
    cols += [("overall_precision_wrong", "all prec"), ("overall_recall_wrong", "all rec"),
             ("overall_f1_wrong", "all F1"), ("first_error_f1", "First-error F1")]
    table = Table("grm", "GRM quality", (
        "How well the run's GRM judges steps, against the offline verifier, with 'this step is wrong' as the positive "
        f"case ({STEP_LEGEND}): on the run's own test outputs, and for a trained GRM also on held-out rollouts of the "
        "warm start (never trained on). AUROC of its score, shown only where a step has at least "
        f"{MIN_WRONG} wrong examples ('too few' elsewhere); F1, precision and recall of 'wrong' at the GRM's "
        "threshold (chosen on the held-out rollouts; 0.5 for the oracle); first-error F1 (ProcessBench): the "
        "harmonic mean of the accuracy at locating a chain's first wrong step and at calling an all-right chain all "
        "right, 0 for a judge that calls everything right. Mean ± std over seeds. Unmeasured where no step truth "
        "exists (silver steps)."), cols)
    for r in rows:
        cells = [r["benchmark"], r["variant"], r["grm"], r["source"], str(r["n_seeds"]), Stat(r["threshold"], ci=False)]
        for s in STEPS:
            auroc = r["steps"][s]["auroc"]
            if auroc["mean"] is not None:
                shown = Stat(auroc, ci=False)
            else:  # no truth for the step at all, or too few wrong examples of it
                shown = "unmeasured" if not r["judged"][s]["mean"] else "too few"
            cells += [shown, Stat(r["steps"][s]["f1_wrong"], ci=False)]
        cells += [Stat(r["overall"][k], ci=False) for k in ("precision_wrong", "recall_wrong", "f1_wrong")]
        cells.append(Stat(r["first_error_f1"], ci=False))
        table.rows.append(cells)
    return table


def comparisons_table(rows: list[dict], notes: list[str], n_boot: int) -> Table:
    cols = [_BENCH, _VARIANT, ("versus", "Versus"), ("family", "Family"), ("seed_pairs", "Seed pairs")]
    for metric, subset in HEADLINE:
        key = metric if subset == "overall" else f"{metric}_{subset}"
        label = METRIC_TITLES[metric] + ("" if subset == "overall" else f" ({subset})")
        cols += [(f"diff_{key}", f"Δ {label}"), (f"p_{key}", "p"), (f"p_holm_{key}", "p Holm")]
    table = Table("comparisons", "Comparisons", (
        "Variant minus 'versus' on the same test examples (joined by id), seed i against seed i. Δ: mean over seed "
        "pairs ± std over pairs [95% interval]; interval and p (two-sided) from one estimator over seeds and "
        "queries: the seed pairs' own variance plus the query variance they share, estimated by a query bootstrap "
        f"of {n_boot} resamples shared by every run, t on seed pairs - 1 df (she_bench/report/stats.py). "
        "Primary comparisons were declared in the suite before the runs; p Holm is Holm's step-down adjustment "
        "within the primary family (all its comparisons x the three metrics), and within the exploratory family "
        "(every other variant against the baseline). * marks Holm-adjusted p < 0.05; exploratory results suggest, "
        "they do not establish."), cols, notes=list(notes))
    for r in rows:
        pairs = _seeds(r["seeds_a"]) if r["seeds_a"] == r["seeds_b"] else \
            "; ".join(f"{a}/{b}" for a, b in zip(r["seeds_a"], r["seeds_b"]))
        cells = [r["benchmark"], r["variant"], r["versus"], r["family"], pairs]
        for metric, subset in HEADLINE:
            res = r["results"][f"{metric}/{subset}"]
            cells += [Stat(res["diff"], signed=True), PValue(res.get("p_value")),
                      PValue(res.get("p_holm"), star=bool(res.get("significant")))]
            if res.get("note"):
                table.notes.append(f"{r['benchmark']} {r['variant']} vs {r['versus']}, {metric} ({subset}): "
                                   f"{res['note']}")
        table.rows.append(cells)
        if r["pairing"] == "order":
            table.notes.append(f"{r['benchmark']} {r['variant']}: no seed in common with {r['versus']}; "
                               "seeds paired in sorted order.")
        unmatched = max(x.get("unmatched_records") or 0 for x in r["results"].values())
        if unmatched:
            table.notes.append(f"{r['benchmark']} {r['variant']} vs {r['versus']}: {unmatched} records without a "
                               "partner in every run were left out.")
    return table


def power_table(rows: list[dict]) -> Table:
    cols = [_BENCH, ("metric", "Metric"), ("seeds", "Seeds"), ("n_queries", "Queries"), ("comparisons", "Pooled over"),
            ("seed_sd", "Seed sd of Δ"), ("query_sd", "Shared query sd"), ("mdd", "Detectable Δ (80%)"),
            ("seeds_for_target", "Seeds for 0.02")]
    table = Table("power", "Power", (
        "The smallest true difference a comparison detects with 80% power at two-sided alpha 0.05 with the seeds "
        "run (noncentral t on seeds - 1 df), for a typical comparison: the median over the primary comparisons "
        "of the seed variance of seed-pair differences and of the shared query variance (pooled over: how many); "
        "and the fewest seeds that would detect "
        "0.02 (n/a: more than 100, or the shared query variance alone is too large: only more test queries help). "
        "One seed: the seed variance is not measured (seed sd n/a), so the detectable difference counts test queries "
        "alone (t on queries - 1 df) and is a lower bound; no seed count is given."),
        cols)
    for r in rows:
        label = METRIC_TITLES[r["metric"]] + ("" if r["subset"] == "overall" else f" ({r['subset']})")
        lower = "" if r.get("seed_var_measured", True) else " (lower bound)"
        table.rows.append([r["benchmark"], label, str(r["seeds"]), str(r["n_queries"]), str(r["comparisons"]),
                           NA if r["seed_var"] is None else Num(r["seed_var"] ** 0.5), Num(r["query_var"] ** 0.5),
                           f"{fnum(r['mdd'])}{lower}",
                           NA if r["seeds_for_target"] is None else str(r["seeds_for_target"])])
    return table


def power_line(rows: list[dict]) -> str:
    """One sentence per benchmark for the top of a report."""
    out = []
    for bench in sorted({r["benchmark"] for r in rows}):
        mine = [r for r in rows if r["benchmark"] == bench]
        seeds = max(r["seeds"] for r in mine)
        if not all(r.get("seed_var_measured", True) for r in mine):
            parts = [f"{METRIC_TITLES[r['metric']]}{'' if r['subset'] == 'overall' else ' (' + r['subset'] + ')'} "
                     f"{fnum(r['mdd'])}" for r in mine]
            out.append(f"{bench}: with one seed the seed variance is not measured; counting the {mine[0]['n_queries']} "
                       "test queries alone, the smallest difference detected with 80% power at alpha 0.05 is at least "
                       + "; ".join(parts) + " (a lower bound: seed variance adds to it).")
            continue
        parts = [f"{METRIC_TITLES[r['metric']]}{'' if r['subset'] == 'overall' else ' (' + r['subset'] + ')'} "
                 f"{fnum(r['mdd'])} (0.02 needs {r['seeds_for_target'] or 'more than 100'} seeds)" for r in mine]
        out.append(f"{bench}: with {seeds} seeds, the smallest difference detected with 80% power at alpha 0.05 is "
                   + "; ".join(parts) + ".")
    return " ".join(out)


def legend_table(rows: list[dict]) -> Table:
    cols = [_BENCH, _VARIANT, ("method", "Method"), ("warm_start", "Warm start"), ("rl", "RL budget"),
            ("outcome", "Outcome reward"), ("step_reward", "Step reward"), ("verifier_steps", "Verifier steps"),
            ("grm", "GRM"), ("grm_steps", "GRM steps"), ("filter", "Filter"), ("curriculum", "Curriculum")]
    table = Table("legend", "Legend", (
        f"What each variant's config sets ({STEP_LEGEND}); n/a: not part of the method. Verifier and GRM steps: the "
        "steps whose step reward each scores (the judgment step is paid by the outcome reward unless "
        "reward.judgment_step_reward). GRM oracle(e): ground truth with each verdict flipped with probability e, a "
        "proxy for a learned GRM; generative: a GRM trained on verifier-labelled rollouts."), cols)

    def text(v) -> str:
        if v is None:
            return NA
        if isinstance(v, bool):
            return "on" if v else "off"
        if isinstance(v, list):
            return ", ".join(v) if v else "none"
        return str(v)

    for r in rows:
        table.rows.append([r["benchmark"], r["variant"]] + [text(r[k]) for k, _ in cols[2:]])
    return table


def slices_table(rows: list[dict]) -> Table:
    cols = [_BENCH, ("slice", "Slice"), _VARIANT, ("n_seeds", "n seeds"), ("n_examples", "n examples"),
            ("accuracy", "Accuracy"), ("macro_f1", "Macro-F1")]
    table = Table("slices", "Slices", "Per slice of the benchmark: mean ± std over seeds.", cols)
    for r in rows:
        table.rows.append([r["benchmark"], r["slice"], r["variant"], str(r["n_seeds"]), _n(r["n_examples"]),
                           Stat(r["accuracy"], ci=False), Stat(r["macro_f1"], ci=False)])
    return table


def steps_table(rows: list[dict]) -> Table:
    cols = [_BENCH, _VARIANT, ("n_seeds", "n seeds")]
    for s in STEPS:
        cols += [(f"step_{s}", STEP_ABBR[s])] + ([(f"ceiling_{s}", f"{STEP_ABBR[s]} verdict ceiling")]
                                                 if s in VERDICT_TITLES else [])
    cols += [("chain_accuracy", "Chain"), ("judgment_consistency", "Consistency")]
    cols += [(f"first_wrong_{s}", f"1st wrong {STEP_ABBR[s]}") for s in STEPS] + [("first_wrong_none", "None wrong")]
    table = Table("steps", "Reasoning steps", (
        f"Per-step accuracy against the offline verifier (annotated steps only; {STEP_LEGEND}), whole-chain "
        "accuracy (every checked step right), judgment consistency (label named in the judgment step equals the "
        "final label): mean ± std over seeds. Verdict ceiling: the accuracy with which a predictor blind to what "
        "the step compares guesses its verdict (see the verdicts table; a step is right only if its verdict is). "
        "First wrong step: share of checked chains whose first wrong step is that step (None wrong: every checked "
        "step right), mean over seeds."), cols)
    for r in rows:
        cells = [r["benchmark"], r["variant"], str(r["n_seeds"])]
        for s in STEPS:
            cells += [Stat(r["step_accuracy"][s], ci=False)] + ([Num(r["ceiling"][s]["mean"])] if s in VERDICT_TITLES
                                                              else [])
        cells += [Stat(r["chain_accuracy"], ci=False), Stat(r["judgment_consistency"], ci=False)]
        cells += [Num(r["first_wrong_step"][k]["mean"]) for k in (*STEPS, "none")]
        table.rows.append(cells)
    return table


def verdicts_table(rows: list[dict]) -> Table:
    cols = [_BENCH, _VARIANT, ("n_seeds", "n seeds")]
    for s, a in VERDICT_TITLES.items():
        cols += [(f"{s}_verdict", f"{a} {'accuracy' if s == 'relevance_judgment' else 'verdict'}"),
                 (f"{s}_ceiling", f"{a} ceiling"), (f"{s}_margin", f"{a} − ceiling"), (f"{s}_auc", f"{a} AUC")]
    table = Table("verdicts", "Verdicts against their shortcut ceilings", (
        "What each comparison step decides, apart from the values it copies: the verdict accuracy of category "
        "matching (the relation, every pair), attribute matching (constrained pairs) and the label, mean ± std over "
        "seeds. Ceiling: the verdict accuracy of a predictor that cannot do the step (fitted on train: CM from the "
        "query text alone, AM and the label from the query text and the item's category; the better of a logistic "
        "regression and the constant guess). A row at its ceiling may be guessing. AUC: teacher-forced on the gold "
        "prefix, each candidate verdict's log-probability against the gold (one-vs-rest, within groups of one query "
        "type and compared key): 0.5 = the verdict ignores the input, 1.0 = it always favours the gold."), cols)
    for r in rows:
        cells = [r["benchmark"], r["variant"], str(r["n_seeds"])]
        for s in VERDICT_TITLES:
            acc = r["label_accuracy"] if s == "relevance_judgment" else r["verdict_accuracy"][s]
            ceiling = r["ceiling"][s]["mean"]
            margin = None if acc["mean"] is None or ceiling is None else acc["mean"] - ceiling
            cells += [Stat(acc, ci=False), Num(ceiling), Num(margin, signed=True), Stat(r["auc"][s], ci=False)]
        table.rows.append(cells)
    return table


def entropy_table(rows: list[dict]) -> Table:
    cols = [_BENCH, _VARIANT, ("n_seeds", "n seeds"), ("eval_mean_entropy", "Eval entropy"),
            ("decision_attribute_matching", "AM verdict entropy"), ("decision_label", "Label entropy"),
            ("top_entropy", "Top-20% entropy"), ("kl_to_reference", "KL to warm start"),
            ("labels_changed", "Labels changed"), ("train_initial", "Train initial"), ("train_final", "Train final"),
            ("train_ratio", "Final / initial"), ("collapsed", "Collapsed")]
    table = Table("entropy", "Policy entropy and movement", (
        "Eval entropy: mean token entropy of the greedy test outputs, dominated by copied tokens; AM verdict and label "
        "entropy: at the first token of each attribute-matching verdict and of the final label; top-20%: mean over "
        "each output's highest-entropy fifth of tokens (nats, teacher-forced, evaluation/decisions.py); KL to warm "
        "start: per token on the test outputs; labels changed: share of test labels that differ from the warm start's "
        "greedy ones. Training entropy of the method's own stages (shared warm start and GRM excluded): mean of the "
        "first and of the last 5 logged steps, their ratio; collapsed: seeds whose ratio fell below "
        f"{COLLAPSE_RATIO} (of the seeds with a training entropy). Mean ± std over seeds."), cols)
    for r in rows:
        collapsed = NA if r["collapsed"] is None else f"{r['collapsed']}/{r['n_with_training_entropy']}"
        table.rows.append([r["benchmark"], r["variant"], str(r["n_seeds"]), Stat(r["eval_mean_entropy"], ci=False),
                           *[Stat(r[k], ci=False) for k in ("decision_attribute_matching", "decision_label",
                                                            "top_entropy", "kl_to_reference", "labels_changed")],
                           Stat(r["initial"], ci=False), Stat(r["final"], ci=False), Stat(r["ratio"], ci=False),
                           collapsed])
    return table


def _short(h) -> str:
    return NA if not h else str(h)[:12]


def provenance_table(runs: list[dict]) -> Table:
    cols = [("path", "Path"), _BENCH, _VARIANT, ("method", "Method"), ("seed", "Seed"),
            ("config_hash", "Config hash"), ("git", "Git commit"), ("data_hash", "Data hash"),
            ("final_model_hash", "Final model hash"), ("torch", "torch"), ("transformers", "transformers"),
            ("trl", "trl"), ("total_seconds", "Total s")]
    table = Table("provenance", "Runs", (
        "Every reported run; paths relative to the common parent of the run directories; hashes shortened to 12 "
        "characters (full values in report.json); git commit with +dirty when the tree had changes."), cols)
    for r in runs:
        git = NA if not r["git_commit"] else _short(r["git_commit"]) + ("+dirty" if r["git_dirty"] else "")
        v = r["versions"]
        table.rows.append([r["path"], r["benchmark"], r["variant"], r["method"] or NA, str(r["seed"]),
                           _short(r["config_hash"]), git, _short(r["data_hash"]), _short(r["final_model_hash"]),
                           v.get("torch") or NA, v.get("transformers") or NA, v.get("trl") or NA,
                           Num(r["total_seconds"], digits=1)])
    return table


def skipped_table(skipped: list[dict]) -> Table:
    table = Table("skipped", "Skipped runs", "Run directories found but not reported, and why.",
                  [("path", "Path"), ("status", "Status"), ("reason", "Reason")])
    for s in skipped:
        table.rows.append([s["path"], s["status"] or NA, s["reason"]])
    return table
