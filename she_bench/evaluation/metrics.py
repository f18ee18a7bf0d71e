"""Evaluation metrics for one run: label metrics with query-level bootstrap intervals, per-step
and whole-chain accuracy, first wrong step, judgment consistency, format validity, entropy.

Each record is one evaluated example::

    {"id", "query_id", "slices": [...], "gold": label, "pred": label | None,
     "format_valid": bool, "judgment": label | None,
     "step_verdicts": {step: True | False | None},      # None = step not checked
     "verdict_correct": {step: True | False | None},    # the step's verdict alone (reasoning/verdicts.py)
     "grm_verdicts": {step: True | False | None},       # optional
     "entropy": float | None}

Definitions
-----------
* ``pred`` None (unparsable) — and any prediction outside ``labels`` — is a distinct wrong
  class: it is never correct and lowers the recall of the gold class.
* ``macro_f1``: mean over ``labels`` of the per-class F1 (sklearn ``f1_score``,
  ``average="macro"``, ``zero_division=0``).
* ``good_f1``: binary F1 where the positive class is "label in ``good_labels``" (e.g. Exact
  and Substitute for ESCI); an unparsable prediction counts as not-good.
* Bootstrap intervals resample *queries* with replacement (all records of a sampled query go
  in, as many times as it is drawn) and take the 2.5/97.5 percentiles.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from she_bench.data.schema import STEPS, DataError
from she_bench.reasoning.verdicts import VERDICT_STEPS

LABEL_METRICS = ("accuracy", "macro_f1", "good_f1")
_REQUIRED = ("id", "query_id", "gold", "pred", "format_valid")


def _r(x):
    return None if x is None else round(float(x), 4)


class _Encoded:
    """Records as integer codes: gold in 0..K-1, pred in 0..K (K = unparsable / unknown)."""

    def __init__(self, records: Sequence[dict], labels: Sequence[str], good_labels: Iterable[str],
                 source: str = "records"):
        labels = list(labels)
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"labels must be non-empty and distinct, got {labels}")
        good = set(good_labels)
        if not good <= set(labels):
            raise ValueError(f"good_labels {sorted(good - set(labels))} are not in labels {labels}")
        index = {lab: i for i, lab in enumerate(labels)}
        self.labels = labels
        self.K = len(labels)
        self.good = np.array([lab in good for lab in labels])
        n = len(records)
        self.gold = np.empty(n, dtype=np.int64)
        self.pred = np.empty(n, dtype=np.int64)
        self.qid = np.empty(n, dtype=object)
        for i, r in enumerate(records):
            for key in _REQUIRED:
                if key not in r:
                    raise DataError(source, f"record {i} (id {r.get('id')!r})", key, "missing")
            if r["gold"] not in index:
                raise DataError(source, f"record {i} (id {r['id']!r})", "gold",
                                f"label {r['gold']!r} is not one of {labels}")
            self.gold[i] = index[r["gold"]]
            self.pred[i] = index.get(r["pred"], self.K) if r["pred"] is not None else self.K
            self.qid[i] = str(r["query_id"])

    def query_confusions(self, idx: np.ndarray) -> np.ndarray:
        """Per-query confusion counts, shape (n_queries, K * (K + 1)), for records `idx`."""
        _, qinv = np.unique(self.qid[idx], return_inverse=True)
        cells = self.gold[idx] * (self.K + 1) + self.pred[idx]
        cm = np.zeros((int(qinv.max()) + 1, self.K * (self.K + 1)))
        np.add.at(cm, (qinv, cells), 1)
        return cm


def _point_scores(gold: np.ndarray, pred: np.ndarray, K: int, good: np.ndarray) -> dict:
    """Label metrics of one subset, with sklearn (the reference values)."""
    codes = list(range(K))
    good_codes = np.append(good, False)  # code K (unparsable) is never good
    return {
        "accuracy": accuracy_score(gold, pred),
        "macro_f1": f1_score(gold, pred, labels=codes, average="macro", zero_division=0),
        "per_class_f1": f1_score(gold, pred, labels=codes, average=None, zero_division=0),
        "good_f1": f1_score(good_codes[gold], good_codes[pred], zero_division=0),
    }


def _cm_scores(cm: np.ndarray, K: int, good: np.ndarray) -> dict:
    """The same label metrics from a batch of confusion counts (B, K*(K+1)), vectorised over B."""
    cm = cm.reshape(-1, K, K + 1)
    tp = cm[:, np.arange(K), np.arange(K)]
    denom = cm.sum(axis=2) + cm.sum(axis=1)[:, :K]  # (tp + fn) + (tp + fp)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    pgood = np.append(good, False)
    g_tp = cm[:, good][:, :, pgood].sum(axis=(1, 2))
    g_den = cm[:, good, :].sum(axis=(1, 2)) + cm[:, :, pgood].sum(axis=(1, 2))
    total = cm.sum(axis=(1, 2))
    return {
        "accuracy": np.divide(tp.sum(axis=1), total, out=np.zeros_like(total), where=total > 0),
        "macro_f1": f1.mean(axis=1),
        "per_class_f1": f1,
        "good_f1": np.divide(2 * g_tp, g_den, out=np.zeros_like(g_tp), where=g_den > 0),
    }


def _query_draws(n_queries: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each query is drawn in each resample: (n_boot, n_queries) counts."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_queries, size=(n_boot, n_queries))
    flat = (np.arange(n_boot)[:, None] * n_queries + draws).ravel()
    return np.bincount(flat, minlength=n_boot * n_queries).reshape(n_boot, n_queries)


def _ci(values: np.ndarray) -> list | None:
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [_r(lo), _r(hi)]


def _step_accuracy(records: Sequence[dict], key: str, steps: Sequence[str]) -> dict:
    out = {}
    for step in steps:
        checked = [(r.get(key) or {}).get(step) for r in records]
        checked = [v for v in checked if v is not None]
        out[step] = _r(np.mean([bool(v) for v in checked])) if checked else None
    return out


def _chain_metrics(records: Sequence[dict], steps: Sequence[str]) -> dict:
    """Whole-chain accuracy and first-wrong-step histogram over records with checked steps."""
    first_wrong = {s: 0 for s in steps}
    first_wrong["none"] = 0
    n_chain = n_all_true = 0
    for r in records:
        verdicts = r.get("step_verdicts") or {}
        checked = [(s, bool(verdicts[s])) for s in steps if verdicts.get(s) is not None]
        if not checked:
            continue
        n_chain += 1
        wrong = next((s for s, ok in checked if not ok), None)
        if wrong is None:
            n_all_true += 1
            first_wrong["none"] += 1
        else:
            first_wrong[wrong] += 1
    return {
        "chain_accuracy": _r(n_all_true / n_chain) if n_chain else None,
        "chain_n": n_chain,
        "first_wrong_step": first_wrong,
    }


def _subset_metrics(records: Sequence[dict], enc: _Encoded, idx: np.ndarray,
                    steps: Sequence[str], n_boot: int, seed: int) -> dict:
    recs = [records[i] for i in idx]
    point = _point_scores(enc.gold[idx], enc.pred[idx], enc.K, enc.good)
    cm_q = enc.query_confusions(idx)
    boot = (_cm_scores(_query_draws(len(cm_q), n_boot, seed) @ cm_q, enc.K, enc.good)
            if n_boot > 0 else {m: np.empty(0) for m in LABEL_METRICS})
    m: dict = {name: {"value": _r(point[name]), "ci95": _ci(boot[name])} for name in LABEL_METRICS}
    m["per_class_f1"] = {lab: _r(f) for lab, f in zip(enc.labels, point["per_class_f1"])}
    pairs = [(r.get("judgment"), r["pred"]) for r in recs]
    pairs = [(j, p) for j, p in pairs if j is not None and p is not None]
    entropies = [float(r["entropy"]) for r in recs if r.get("entropy") is not None]
    m.update({
        "n": len(recs),
        "n_queries": len(cm_q),
        "format_valid_rate": _r(np.mean([bool(r["format_valid"]) for r in recs])),
        "parse_failures": sum(r["pred"] is None for r in recs),
        "step_accuracy": _step_accuracy(recs, "step_verdicts", steps),
        "step_accuracy_grm": _step_accuracy(recs, "grm_verdicts", steps),
        "verdict_accuracy": _step_accuracy(recs, "verdict_correct", VERDICT_STEPS),
        **_chain_metrics(recs, steps),
        "judgment_consistency": _r(np.mean([j == p for j, p in pairs])) if pairs else None,
        "judgment_missing": sum(r.get("judgment") is None for r in recs),
        "mean_entropy": _r(np.mean(entropies)) if entropies else None,
    })
    return m


def compute_metrics(records: Iterable[dict], labels: Sequence[str], good_labels: Iterable[str],
                    slices: Iterable[str] | None, steps: Sequence[str] = STEPS,
                    n_boot: int = 1000, seed: int = 0) -> dict:
    """All metrics of one run, overall and for each slice in `slices` that has a record.

    Returns ``{"n", "labels", "good_labels", "n_boot", "seed", "overall": M, "slices":
    {name: M}}``; see the module docstring for M. Accuracy, macro-F1 and good-F1 are
    ``{"value", "ci95": [lo, hi]}`` (``ci95`` None when ``n_boot`` is 0). Every slice's
    bootstrap uses a fresh generator seeded with `seed`, so results do not depend on the
    order of `slices`.
    """
    records = list(records)
    if not records:
        raise ValueError("compute_metrics: no records to evaluate")
    enc = _Encoded(records, labels, good_labels)
    out = {
        "n": len(records),
        "labels": list(labels),
        "good_labels": [lab for lab in labels if lab in set(good_labels)],
        "n_boot": n_boot,
        "seed": seed,
        "overall": _subset_metrics(records, enc, np.arange(len(records)), steps, n_boot, seed),
        "slices": {},
    }
    for name in slices or ():
        idx = np.array([i for i, r in enumerate(records) if name in (r.get("slices") or ())],
                       dtype=np.int64)
        if idx.size:
            out["slices"][name] = _subset_metrics(records, enc, idx, steps, n_boot, seed)
    return out
