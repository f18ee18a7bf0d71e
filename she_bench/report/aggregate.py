"""The numbers of a report: per-variant means and spreads over seeds, paired tests against the
baseline, slices, step quality, entropy and training curves.

A *stat* is ``{"mean", "std", "lo", "hi", "n", "interval"}`` over the seeds that have a value:
``std`` is the sample standard deviation (None with one seed); ``lo``/``hi`` is a 95% interval,
``interval`` says which: ``"t"`` (Student-t interval of the mean over seeds, two or more seeds),
``"bootstrap"`` (the single run's bootstrap interval over queries), ``"seeds+queries"`` (the crossed
estimator of report.stats, used for label metrics in the summary and every comparison) or None.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats as st

from she_bench.config import RewardConfig
from she_bench.data.schema import STEPS
from she_bench.evaluation.entropy import training_entropy
from she_bench.evaluation.metrics import _Encoded
from she_bench.reasoning.verdicts import VERDICT_STEPS
from she_bench.report.collect import RunData
from she_bench.report.stats import _sig, crossed, holm, mdd, seeds_to_detect
from she_bench.rewards.grm import grm_label, uses_grm
from she_bench.runs import SHARED_STAGES, run_budget

LABEL_METRICS = ("accuracy", "macro_f1", "good_f1")
SUMMARY_SUBSETS = ("overall", "head", "tail")
HEADLINE = (("accuracy", "overall"), ("macro_f1", "overall"), ("macro_f1", "tail"))
"""The (metric, subset) pairs every comparison tests, Holm's family, and the power line's metrics."""
STEP_ABBR = {s: "".join(w[0].upper() for w in s.split("_")) for s in STEPS}  # QU, IU, CM, AM, RJ
SLICE_ORDER = ("head", "tail", "unseen_combo")


def _round(x, nd: int = 6):
    return None if x is None else round(float(x), nd)


def stat(values, cis=None, bounds: tuple[float, float] | None = None) -> dict:
    """Mean and spread over seeds; `cis` (aligned with `values`) gives the interval of a lone run;
    a t-interval is clipped to `bounds` (e.g. (0, 1) for a rate)."""
    cis = list(cis) if cis is not None else [None] * len(values)
    pairs = [(float(v), ci) for v, ci in zip(values, cis) if v is not None]
    n = len(pairs)
    out = {"mean": None, "std": None, "lo": None, "hi": None, "n": n, "interval": None}
    if n == 0:
        return out
    vals = np.array([v for v, _ in pairs])
    mean = float(vals.mean())
    out["mean"] = _round(mean)
    if n >= 2:
        std = float(vals.std(ddof=1))
        half = float(st.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        lo, hi = mean - half, mean + half
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        out.update(std=_round(std), lo=_round(lo), hi=_round(hi), interval="t")
    elif pairs[0][1] is not None:
        lo, hi = pairs[0][1]
        out.update(lo=_round(lo), hi=_round(hi), interval="bootstrap")
    return out


def subset_metrics(run: RunData, subset: str) -> dict | None:
    """The metrics block M of a run for 'overall' or a slice name (None when absent)."""
    if subset == "overall":
        return run.metrics.get("overall")
    return (run.metrics.get("slices") or {}).get(subset)


def label_stat(runs: list[RunData], subset: str, metric: str) -> dict:
    values, cis = [], []
    for r in runs:
        m = (subset_metrics(r, subset) or {}).get(metric) or {}
        values.append(m.get("value"))
        cis.append(m.get("ci95"))
    return stat(values, cis, bounds=(0.0, 1.0))


def field_stat(runs: list[RunData], subset: str, key: str) -> dict:
    return stat([(subset_metrics(r, subset) or {}).get(key) for r in runs])


def ordered_keys(groups: dict, baseline: str) -> list[tuple[str, str]]:
    """Benchmarks alphabetically; within one, the baseline first, then the variants alphabetically."""
    return sorted(groups, key=lambda k: (k[0], k[1] != baseline, k[1]))


def ordered_slices(groups: dict) -> list[str]:
    names = {s for runs in groups.values() for r in runs for s in (r.metrics.get("slices") or {})}
    return [s for s in SLICE_ORDER if s in names] + sorted(names - set(SLICE_ORDER))


def _n_examples(runs: list[RunData], subset: str) -> list[int]:
    return sorted({(subset_metrics(r, subset) or {}).get("n") for r in runs} - {None})


# ---------------------------------------------------------------- sections


def summary_rows(groups: dict, keys: list, n_boot: int, seed: int) -> list[dict]:
    rows = []
    for key in keys:
        runs = groups[key]
        row = {"benchmark": key[0], "variant": key[1], "seeds": [r.seed for r in runs], "n_seeds": len(runs),
               "n_examples": _n_examples(runs, "overall"), "grm": run_grm(runs[0]), "budget": budget_stat(runs)}
        for metric in LABEL_METRICS:
            row[metric] = {s: crossed_stat(runs, s, metric, n_boot, seed) for s in SUMMARY_SUBSETS}
        row["format_valid_rate"] = field_stat(runs, "overall", "format_valid_rate")
        row["parse_failures"] = [(r.metrics["overall"].get("parse_failures")) for r in runs]
        row["mean_entropy"] = field_stat(runs, "overall", "mean_entropy")
        rows.append(row)
    return rows


def slice_rows(groups: dict, keys: list) -> list[dict]:
    rows = []
    for name in ordered_slices(groups):
        for key in keys:
            runs = [r for r in groups[key] if subset_metrics(r, name)]
            if not runs:
                continue
            rows.append({"benchmark": key[0], "slice": name, "variant": key[1], "n_seeds": len(runs),
                         "n_examples": _n_examples(runs, name),
                         **{m: label_stat(runs, name, m) for m in LABEL_METRICS}})
    return rows


def _first_wrong_shares(run: RunData) -> dict:
    hist = run.metrics["overall"].get("first_wrong_step") or {}
    total = sum(v for v in hist.values() if v)
    return {k: (hist.get(k, 0) / total if total else None) for k in (*STEPS, "none")}


def step_rows(groups: dict, keys: list) -> list[dict]:
    rows = []
    for key in keys:
        runs = groups[key]
        overall = [r.metrics["overall"] for r in runs]
        shares = [_first_wrong_shares(r) for r in runs]
        rows.append({
            "benchmark": key[0], "variant": key[1], "n_seeds": len(runs),
            "step_accuracy": {s: stat([(m.get("step_accuracy") or {}).get(s) for m in overall]) for s in STEPS},
            "step_accuracy_grm": {s: stat([(m.get("step_accuracy_grm") or {}).get(s) for m in overall])
                                  for s in STEPS},
            "verdict_accuracy": {s: stat([(m.get("verdict_accuracy") or {}).get(s) for m in overall])
                                 for s in VERDICT_STEPS},
            "ceiling": {s: stat([((r.metrics.get("ceilings") or {}).get(s) or {}).get("ceiling") for r in runs])
                        for s in VERDICT_STEPS},
            "auc": {s: stat([((r.metrics.get("conditioning") or {}).get(s) or {}).get("auc") for r in runs])
                    for s in VERDICT_STEPS},
            "label_accuracy": stat([m["accuracy"]["value"] for m in overall]),
            "chain_accuracy": stat([m.get("chain_accuracy") for m in overall]),
            "judgment_consistency": stat([m.get("judgment_consistency") for m in overall]),
            "first_wrong_step": {k: stat([s[k] for s in shares]) for k in (*STEPS, "none")},
        })
    return rows


def run_grm(run: RunData) -> str | None:
    """The GRM behind a run's step rewards, as reports name it (None: no GRM in its reward)."""
    c, r = run.config, {**dataclasses.asdict(RewardConfig()), **(run.config.get("reward") or {})}
    if not uses_grm(str(c.get("method")), r["mixing"]):
        return None
    return grm_label(r["grm"], r["grm_error_rate"], r["grm_model"])


GRM_RATES = ("auroc", "precision_wrong", "recall_wrong", "f1_wrong", "accuracy")
GRM_SOURCES = (("outputs", "the run's test outputs"), ("heldout", "held-out warm-start rollouts"))


def grm_rows(groups: dict, keys: list) -> list[dict]:
    """Per variant whose runs measured their GRM, and per source (the run's own test outputs; for a trained
    GRM also its held-out warm-start rollouts): its quality per step and pooled, over seeds."""
    rows = []
    for key in keys:
        measured = [r.metrics["grm_agreement"] for r in groups[key] if r.metrics.get("grm_agreement")]
        for source, title in GRM_SOURCES:
            found = [m if source == "outputs" else (m.get("heldout") or {}).get("heldout") for m in measured]
            found = [m for m in found if m]
            if not found:
                continue
            get = lambda m, s, k: ((m.get("steps") or {}).get(s) or {}).get(k)  # noqa: E731
            rows.append({
                "benchmark": key[0], "variant": key[1], "grm": measured[0]["grm"], "source": title,
                "n_seeds": len(found),
                "threshold": stat([m.get("threshold") for m in found]),
                "steps": {s: {k: stat([get(m, s, k) for m in found]) for k in GRM_RATES} for s in STEPS},
                "judged": {s: stat([get(m, s, "n") for m in found]) for s in STEPS},
                "overall": {k: stat([(m.get("overall") or {}).get(k) for m in found]) for k in GRM_RATES},
                "first_error_f1": stat([(m.get("first_error") or {}).get("f1") for m in found]),
            })
    return rows


def run_training_entropy(run: RunData) -> dict | None:
    """From metrics.json when recorded there, else computed from the run's train log."""
    if "training_entropy" in run.metrics:
        return run.metrics["training_entropy"]
    return training_entropy(run.train_log) if run.train_log else None


def entropy_rows(groups: dict, keys: list) -> list[dict]:
    rows = []
    for key in keys:
        runs = groups[key]
        te = [run_training_entropy(r) for r in runs]
        have = [t for t in te if t]
        rows.append({
            "benchmark": key[0], "variant": key[1], "n_seeds": len(runs),
            "eval_mean_entropy": field_stat(runs, "overall", "mean_entropy"),
            **{k: stat([t.get(k) if t else None for t in te]) for k in ("initial", "final", "ratio")},
            "collapsed": sum(bool(t.get("collapsed")) for t in have) if have else None,
            "n_with_training_entropy": len(have),
            **{f"decision_{k}": stat([((r.metrics.get("decisions") or {}).get("entropy") or {}).get(k) for r in runs])
               for k in ("attribute_matching", "label")},
            **{k: stat([(r.metrics.get("decisions") or {}).get(k) for r in runs])
               for k in ("top_entropy", "kl_to_reference", "labels_changed")},
        })
    return rows


# ---------------------------------------------------------------- seeds x queries


def _labels(runs: list[RunData]) -> tuple[list[str], np.ndarray]:
    m = runs[0].metrics
    labels = m.get("labels") or sorted({p["gold"] for p in runs[0].predictions})
    good = set(m.get("good_labels") or [])
    return labels, np.array([lab in good for lab in labels])


def _subset_records(run: RunData, subset: str) -> list[dict]:
    if subset == "overall":
        return run.predictions
    return [p for p in run.predictions if subset in (p.get("slices") or ())]


def _confusions(runs: list[RunData], subset: str, labels: list[str], good: np.ndarray) -> tuple[list, int]:
    """Per-query confusion counts of each run on the examples of `subset` every run holds (queries in
    one order for all), and how many records were left out for want of a partner."""
    records = [_subset_records(r, subset) for r in runs]
    common = set.intersection(*({p["id"] for p in recs} for recs in records)) if records else set()
    unmatched = sum(len(recs) for recs in records) - len(records) * len(common)
    if not common:
        return [], unmatched
    cms = []
    for recs in records:
        kept = sorted((p for p in recs if p["id"] in common), key=lambda p: str(p["id"]))
        enc = _Encoded(kept, labels, [lab for lab, g in zip(labels, good) if g])
        cms.append(enc.query_confusions(np.arange(len(kept))))
    return cms, unmatched


def _as_stat(c: dict, bounds=(0.0, 1.0)) -> dict:
    """A crossed() result in the shape of a stat (mean, std over seeds, lo, hi)."""
    per = [x for x in c["per_seed"] if x is not None]
    lo, hi = c["lo"], c["hi"]
    if bounds is not None and lo is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return {"mean": c["diff"], "std": _round(np.std(per, ddof=1)) if len(per) > 1 else None, "lo": lo, "hi": hi,
            "n": c["n_seeds"], "interval": None if lo is None else "seeds+queries" if c["n_seeds"] > 1 else "queries"}


def crossed_stat(runs: list[RunData], subset: str, metric: str, n_boot: int, seed: int) -> dict:
    """Mean over seeds of a label metric with the seeds x queries interval (report.stats.crossed)."""
    labels, good = _labels(runs)
    cms, _ = _confusions(runs, subset, labels, good)
    if not cms:
        return stat([])
    return _as_stat(crossed(cms, None, metric, len(labels), good, n_boot, seed))


def _pairs(a: list[RunData], b: list[RunData]) -> tuple[list, str]:
    sa, sb = {r.seed: r for r in a}, {r.seed: r for r in b}
    common = sorted(sa.keys() & sb.keys())
    if common:
        return [(sa[s], sb[s]) for s in common], "seed"
    return list(zip(a, b)), "order"


def compare(a: list[RunData], b: list[RunData], n_boot: int, seed: int) -> dict:
    """Variant `a` minus `b` on each headline metric: Delta over seed pairs (same seed; without a shared
    seed, the i-th seeds), its 95% interval and p from the crossed seeds x queries estimator."""
    pairs, pairing = _pairs(a, b)
    labels, good = _labels(b)
    out = {"seeds_a": [p[0].seed for p in pairs], "seeds_b": [p[1].seed for p in pairs], "pairing": pairing,
           "results": {}}
    for metric, subset in HEADLINE:
        cms, unmatched = _confusions([r for p in pairs for r in p], subset, labels, good)
        res = {"unmatched_records": unmatched, "note": None}
        if not cms:
            res.update(note=f"no example of '{subset}' in every run", diff=stat([]), p_value=None)
        else:
            c = crossed(cms[0::2], cms[1::2], metric, len(labels), good, n_boot, seed)
            res.update(c, diff=_as_stat(c, bounds=None))
        out["results"][f"{metric}/{subset}"] = res
    return out


def comparison_rows(groups: dict, keys: list, baseline: str, primary: list, n_boot: int,
                    seed: int) -> tuple[list, list]:
    """The declared primary comparisons (Holm-adjusted within them), then every other variant against
    `baseline` (exploratory, Holm-adjusted within that family). Returns (rows, notes)."""
    rows, notes = [], []
    for bench in sorted({k[0] for k in keys}):
        names = {k[1] for k in keys if k[0] == bench}
        planned = []
        for a, b in primary:
            if a in names and b in names:
                planned.append((a, b, "primary"))
            else:
                notes.append(f"{bench}: primary comparison {a} vs {b} not run "
                             f"({', '.join(x for x in (a, b) if x not in names)} "
                             "missing)")
        done = {(a, b) for a, b, _ in planned}
        if baseline in names:
            planned += [(k[1], baseline, "exploratory") for k in keys
                        if k[0] == bench and k[1] != baseline and (k[1], baseline) not in done]
        elif names - {baseline}:
            notes.append(f"{bench}: baseline '{baseline}' not among the reported variants")
        for a, b, family in planned:
            rows.append({"benchmark": bench, "variant": a, "versus": b, "family": family,
                         **compare(groups[(bench, a)], groups[(bench, b)], n_boot, seed)})
    for bench in {r["benchmark"] for r in rows}:
        for family in ("primary", "exploratory"):
            cells = [(r, key) for r in rows if r["benchmark"] == bench and r["family"] == family
                     for key in r["results"]]
            adjusted = holm([r["results"][k].get("p_value") for r, k in cells])
            for (r, k), p in zip(cells, adjusted):
                r["results"][k]["p_holm"] = _round(p, 8)
                r["results"][k]["significant"] = p is not None and p < 0.05
    return rows, notes


def power_rows(comparisons: list[dict], target: float = 0.02) -> list[dict]:
    """Per benchmark and headline metric: the minimum detectable difference at 80% power and alpha 0.05
    with the seeds run, for a typical comparison: the median, over the primary comparisons (all
    comparisons where none is primary), of the seed variance of seed-pair differences and of the
    shared query variance (the median, not the mean, so that one unstable variant does not set the
    figure for all); and the seeds that would detect `target`. With one seed the seed variance is not
    measured: the row counts queries alone (`seed_var_measured` False), a lower bound on the true MDD,
    and no seed count is given."""
    rows = []
    for bench in sorted({r["benchmark"] for r in comparisons}):
        mine = [r for r in comparisons if r["benchmark"] == bench]
        chosen = [r for r in mine if r["family"] == "primary"] or mine
        for metric, subset in HEADLINE:
            res = [r["results"][f"{metric}/{subset}"] for r in chosen]
            res = [x for x in res if x.get("query_var") is not None]
            if not res:
                continue
            measured = [x for x in res if x.get("seed_var") is not None]
            res = measured or res
            seed_var = float(np.median([x["seed_var"] for x in measured])) if measured else 0.0
            query_var = float(np.median([x["query_var"] for x in res]))
            seeds, queries = max(x["n_seeds"] for x in res), min(x["n_queries"] for x in res)
            rows.append({"benchmark": bench, "metric": metric, "subset": subset, "seeds": seeds, "n_queries": queries,
                         "comparisons": len(res), "seed_var_measured": bool(measured),
                         "seed_var": _sig(seed_var) if measured else None, "query_var": _sig(query_var),
                         "mdd": _round(mdd(seed_var, query_var, seeds, queries)), "target": target,
                         "seeds_for_target": (seeds_to_detect(target, seed_var, query_var, queries) if measured
                                              else None)})
    return rows


# ---------------------------------------------------------------- budgets and legend

BUDGET_KEYS = ("optimizer_steps", "prompts_seen", "tokens_generated", "tokens_trained", "total_seconds",
               "warm_start_steps", "warm_start_tokens_trained")


def budget_stat(runs: list[RunData]) -> dict:
    """Means over seeds of each run's budget; keys a run's metrics lack (written by an older version)
    are recomputed from its train log."""
    budgets = [{**run_budget(r.train_log, {}), **(r.metrics.get("budget") or {})} for r in runs]
    return {k: stat([b.get(k) for b in budgets]) for k in BUDGET_KEYS}


def _warm_start_text(cfg: dict) -> str:
    ws, train = cfg["warm_start"], cfg.get("train") or {}
    if not ws["epochs"]:
        return "none (the base model)"
    return f"{ws['epochs']} epochs, lr {ws['lr']}" + (", LoRA" if train.get("lora") else "")


def _annotated_steps(benchmark: str) -> list[str] | None:
    from she_bench.data.cards import Card, find_card

    try:
        return Card.from_yaml(find_card(benchmark)).annotated_steps
    except (OSError, ValueError, KeyError):
        return None


def legend_rows(groups: dict, keys: list) -> list[dict]:
    """What each variant's config says about its training: reward options, the steps the verifier and the
    GRM score, filtering, curriculum, and the RL / warm-start budget."""
    from she_bench.config import Config

    rows = []
    for key in keys:
        run = groups[key][0]
        c = run.config
        cfg = {k: {**dataclasses.asdict(getattr(Config(), k)), **(c.get(k) or {})}
               for k in ("reward", "train", "rl", "warm_start", "filter")}
        r, method = cfg["reward"], str(c.get("method"))
        step_rl = method in ("srpo", "she")
        annotated = _annotated_steps(key[0]) or list(STEPS)
        rewarded = [s for s in STEPS if r["judgment_step_reward"] or s != "relevance_judgment"]
        verifier = [s for s in rewarded if s in annotated and (r["verifier_steps"] is None or s in r["verifier_steps"])]
        if r["mixing"] == "verifier_only":
            verifier_scored, grm_scored = verifier, []
        elif r["mixing"] == "verifier_first":
            verifier_scored, grm_scored = verifier, [s for s in rewarded if s not in verifier]
        elif r["mixing"] == "grm_only":
            verifier_scored, grm_scored = [], rewarded
        else:
            verifier_scored, grm_scored = verifier, rewarded
        rl = method in ("grpo", "srpo", "she")
        rows.append({
            "benchmark": key[0], "variant": key[1], "method": method,
            "outcome": (f"format={r['format']}, ordinal={r['ordinal_credit']}, class_weights={r['class_weights']}"
                        if rl else None),
            "grm": run_grm(run),
            "verifier_steps": [STEP_ABBR[s] for s in verifier_scored] if step_rl else None,
            "grm_steps": [STEP_ABBR[s] for s in grm_scored] if step_rl and run_grm(run) else None,
            "step_reward": (f"mixing={r['mixing']}, lambda={r['step_weight']}, w_crit={r['critical_weight']}"
                            + (", scalar" if r["scalar"] else "")) if step_rl else None,
            "filter": bool(cfg["filter"]["enabled"]) if method == "she" else None,
            "curriculum": [s.get("name") for s in c.get("curriculum") or []] if method == "she" else None,
            "rl": (f"{cfg['train']['max_steps']} steps x {cfg['train']['prompts_per_step']} prompts x "
                   f"{cfg['rl']['group_size']} rollouts, lr {cfg['train']['lr']}") if rl else None,
            "warm_start": _warm_start_text(cfg) if "warm_start" in run.manifest else None,  # classic rows have none
        })
    return rows


# ---------------------------------------------------------------- training curves


def method_log(log: list[dict]) -> list[tuple[int, dict]]:
    """The main method's train-log lines as (global step, record): shared warm start / GRM lines and
    stage markers dropped; curriculum stages laid end to end; a step logged twice (a resumed
    run) keeps its last line."""
    stages, last = [], {}
    for r in log:
        if "event" in r or r.get("stage") in SHARED_STAGES or r.get("step") is None:
            continue
        stage = str(r.get("stage", "main"))
        if stage not in stages:
            stages.append(stage)
        last[(stage, int(r["step"]))] = r
    out, offset = [], 0
    for stage in stages:
        steps = sorted(s for t, s in last if t == stage)
        out.extend((offset + s, last[(stage, s)]) for s in steps)
        offset += max(steps)
    return out


def curve(runs: list[RunData], key: str) -> tuple[list[int], list[float]] | None:
    """Mean over seeds of `key` at each global step (over the seeds that logged it)."""
    at: dict[int, list[float]] = {}
    for r in runs:
        for x, rec in method_log(r.train_log):
            v = rec.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                at.setdefault(x, []).append(float(v))
    if not at:
        return None
    xs = sorted(at)
    return xs, [float(np.mean(at[x])) for x in xs]
