"""The numbers of a report: per-variant means and spreads over seeds, paired tests against the
baseline, slices, step quality, entropy and training curves.

A *stat* is ``{"mean", "std", "lo", "hi", "n", "interval"}`` over the seeds that have a value:
``std`` is the sample standard deviation (None with one seed); ``lo``/``hi`` is a 95% interval,
``interval`` says which: ``"t"`` (Student-t interval of the mean over seeds, two or more seeds),
``"bootstrap"`` (the single run's bootstrap interval over queries) or None.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats as st

from she_bench.config import RewardConfig
from she_bench.data.schema import STEPS
from she_bench.evaluation.entropy import training_entropy
from she_bench.evaluation.metrics import paired_bootstrap
from she_bench.report.collect import RunData
from she_bench.runs import SHARED_STAGES
from she_bench.rewards.grm import grm_label, uses_grm

LABEL_METRICS = ("accuracy", "macro_f1", "good_f1")
SUMMARY_SUBSETS = ("overall", "head", "tail")
COMPARE_METRICS = ("accuracy", "macro_f1")
COMPARE_SUBSETS = ("overall", "tail")
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


def summary_rows(groups: dict, keys: list) -> list[dict]:
    rows = []
    for key in keys:
        runs = groups[key]
        row = {"benchmark": key[0], "variant": key[1], "seeds": [r.seed for r in runs], "n_seeds": len(runs),
               "n_examples": _n_examples(runs, "overall"), "grm": run_grm(runs[0])}
        for metric in LABEL_METRICS:
            row[metric] = {s: label_stat(runs, s, metric) for s in SUMMARY_SUBSETS}
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


GRM_RATES = ("accuracy", "precision_wrong", "recall_wrong")


def grm_rows(groups: dict, keys: list) -> list[dict]:
    """Per variant whose runs measured their GRM: agreement with the verifier per step, over seeds."""
    rows = []
    for key in keys:
        measured = [r.metrics["grm_agreement"] for r in groups[key] if r.metrics.get("grm_agreement")]
        if not measured:
            continue
        rows.append({
            "benchmark": key[0], "variant": key[1], "grm": measured[0]["grm"], "n_seeds": len(measured),
            "steps": {s: {k: stat([m["steps"][s][k] for m in measured]) for k in GRM_RATES} for s in STEPS},
            "overall": {k: stat([m["overall"][k] for m in measured]) for k in GRM_RATES},
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
        })
    return rows


# ---------------------------------------------------------------- paired comparison


def _subset_records(run: RunData, subset: str) -> list[dict]:
    if subset == "overall":
        return run.predictions
    return [p for p in run.predictions if subset in (p.get("slices") or ())]


def _pairs(a: list[RunData], b: list[RunData]) -> tuple[list, str]:
    sa, sb = {r.seed: r for r in a}, {r.seed: r for r in b}
    common = sorted(sa.keys() & sb.keys())
    if common:
        return [(sa[s], sb[s]) for s in common], "seed"
    return list(zip(a, b)), "order"


def compare(a: list[RunData], b: list[RunData], labels, good_labels, n_boot: int, seed: int) -> dict:
    """Variant `a` minus baseline `b` on each metric and subset, paired over queries.

    Seed pairs are (same seed of a and b); without a shared seed, the i-th seeds. ``diff`` is the
    mean over seed pairs of the per-pair difference (``std`` its spread over pairs); the 95%
    interval and the two-sided p-value come from one paired bootstrap over queries on the
    concatenated seed pairs (a query's records from every pair move together).
    """
    pairs, pairing = _pairs(a, b)
    out = {"seeds_a": [p[0].seed for p in pairs], "seeds_b": [p[1].seed for p in pairs], "pairing": pairing,
           "results": {}}
    for subset in COMPARE_SUBSETS:
        pooled_a, pooled_b, n_pairs, n_unmatched = [], [], [], 0
        for k, (ra, rb) in enumerate(pairs):
            recs_a, recs_b = _subset_records(ra, subset), _subset_records(rb, subset)
            ids = {r["id"] for r in recs_a} & {r["id"] for r in recs_b}
            n_unmatched += len(recs_a) + len(recs_b) - 2 * len(ids)
            recs_a = sorted((r for r in recs_a if r["id"] in ids), key=lambda r: str(r["id"]))
            recs_b = sorted((r for r in recs_b if r["id"] in ids), key=lambda r: str(r["id"]))
            pooled_a.append([{**r, "id": f"{k}:{r['id']}"} for r in recs_a])
            pooled_b.append([{**r, "id": f"{k}:{r['id']}"} for r in recs_b])
            n_pairs.append(len(ids))
        for metric in COMPARE_METRICS:
            res = {"n_per_pair": n_pairs, "unmatched_records": n_unmatched, "diff": stat([]), "ci95": None,
                   "p_value": None, "per_pair": [], "note": None}
            if not all(n_pairs) or not pairs:
                res["note"] = f"no example of '{subset}' in both runs of every seed pair"
                out["results"][f"{metric}/{subset}"] = res
                continue
            try:
                per_pair = [paired_bootstrap(pa, pb, metric, n_boot=0, labels=labels, good_labels=good_labels)
                            for pa, pb in zip(pooled_a, pooled_b)]
                pooled = paired_bootstrap([r for p in pooled_a for r in p], [r for p in pooled_b for r in p],
                                          metric, n_boot=n_boot, seed=seed, labels=labels, good_labels=good_labels)
            except ValueError as e:
                res["note"] = str(e)
                out["results"][f"{metric}/{subset}"] = res
                continue
            diffs = [p["diff"] for p in per_pair]
            d = stat(diffs)
            if pooled["ci95"] is not None:
                d.update(lo=pooled["ci95"][0], hi=pooled["ci95"][1], interval="paired_bootstrap")
            else:
                d.update(lo=None, hi=None, interval=None)
            res.update(diff=d, a=stat([p["a"] for p in per_pair]), b=stat([p["b"] for p in per_pair]),
                       pooled_diff=pooled["diff"], ci95=pooled["ci95"], p_value=pooled["p_value"],
                       n_queries=pooled["n_queries"], per_pair=diffs)
            out["results"][f"{metric}/{subset}"] = res
    return out


def vs_baseline_rows(groups: dict, keys: list, baseline: str, n_boot: int, seed: int) -> tuple[list, list]:
    """Rows of the comparison, and notes (e.g. a benchmark without the baseline)."""
    rows, notes = [], []
    for bench in sorted({k[0] for k in keys}):
        base_key = (bench, baseline)
        others = [k for k in keys if k[0] == bench and k != base_key]
        if base_key not in groups:
            if others:
                notes.append(f"{bench}: baseline '{baseline}' not among the reported variants; no comparison")
            continue
        base_runs = groups[base_key]
        labels = base_runs[0].metrics.get("labels") or sorted({p["gold"] for p in base_runs[0].predictions})
        good = base_runs[0].metrics.get("good_labels") or []
        for key in others:
            c = compare(groups[key], base_runs, labels, good, n_boot, seed)
            rows.append({"benchmark": bench, "variant": key[1], "baseline": baseline, **c})
    return rows, notes


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
