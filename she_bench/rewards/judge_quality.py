"""How well a step judge (a GRM) judges steps, measured the way the field measures step judges.

Against the verifier's truth, per step, with "positive" = "this step is wrong" (the case a stepwise
reward exists to catch):

- AUROC of the judge's score for "wrong" (1 - P(right)); reported only where a step has at least
  `MIN_WRONG` wrong examples (and one right one), elsewhere "too few";
- precision, recall and F1 of "wrong" at the judge's decision threshold (a score below it reads as wrong);
- ProcessBench's first-error F1 over whole chains: the harmonic mean of the accuracy at locating the
  first wrong step in chains that have one, and of the accuracy at calling an all-right chain all right.
  A judge that calls every step right scores 0 (it never locates an error).

A judge that never flags anything has high accuracy on a mostly-right policy, recall 0 and first-error F1
0, so read them together. The trained GRM's threshold is chosen with these on held-out rollouts
(methods/train_grm.py); evaluation/grm_quality.py applies them to a run's own outputs.
"""
from __future__ import annotations

from she_bench.data.schema import STEPS

MIN_WRONG = 20
"""AUROC is reported for a step only with at least this many wrong examples (fewer make it noise)."""


def _r(x):
    return None if x is None else round(float(x), 6)


def step_rates(pairs: list[tuple[bool, float]], threshold: float) -> dict:
    """pairs of (verifier says wrong, GRM score for 'right')."""
    from sklearn.metrics import roc_auc_score

    n = len(pairs)
    wrong = sum(t for t, _ in pairs)
    flagged = [(t, s < threshold) for t, s in pairs]
    tp = sum(t and p for t, p in flagged)
    n_flagged = sum(p for _, p in flagged)
    precision = tp / n_flagged if n_flagged else None
    recall = tp / wrong if wrong else None
    f1 = ((2 * precision * recall / (precision + recall) if precision and recall else 0.0) if recall is not None
          else None)
    auroc = None
    if wrong >= MIN_WRONG and wrong < n:
        auroc = roc_auc_score([t for t, _ in pairs], [1 - s for _, s in pairs])
    return {"n": n, "wrong": wrong, "flagged": n_flagged,
            "accuracy": _r(sum(t == p for t, p in flagged) / n) if n else None,
            "precision_wrong": _r(precision), "recall_wrong": _r(recall), "f1_wrong": _r(f1), "auroc": _r(auroc),
            "auroc_status": "ok" if auroc is not None else ("unmeasured" if n == 0 else "too few")}


def first_error_f1(chains: list[list[tuple[bool, float]]], threshold: float) -> dict:
    """chains: per chain, its checked steps in order as (verifier says wrong, GRM score for 'right')."""
    erroneous = [c for c in chains if any(t for t, _ in c)]
    correct = [c for c in chains if c and not any(t for t, _ in c)]

    def first(flags):
        return next((i for i, f in enumerate(flags) if f), None)

    acc_err = (sum(first([s < threshold for _, s in c]) == first([t for t, _ in c]) for c in erroneous) / len(erroneous)
               if erroneous else None)
    acc_corr = sum(all(s >= threshold for _, s in c) for c in correct) / len(correct) if correct else None
    f1 = None
    if acc_err is not None and acc_corr is not None:
        f1 = 2 * acc_err * acc_corr / (acc_err + acc_corr) if acc_err + acc_corr > 0 else 0.0
    return {"erroneous": len(erroneous), "correct": len(correct), "accuracy_erroneous": _r(acc_err),
            "accuracy_correct": _r(acc_corr), "f1": _r(f1)}


def judge_quality(items: list[tuple[dict, dict]], threshold: float, steps=STEPS) -> dict:
    """items: (verifier verdicts {step: bool | None}, GRM scores {step: float | None}) per chain."""
    per_step: dict[str, list] = {s: [] for s in steps}
    chains = []
    for truth, scores in items:
        chain = []
        for s in steps:
            if truth.get(s) is not None and scores.get(s) is not None:
                per_step[s].append((not truth[s], float(scores[s])))
                chain.append((not truth[s], float(scores[s])))
        if chain:
            chains.append(chain)
    pooled = [x for p in per_step.values() for x in p]
    return {"threshold": threshold, "steps": {s: step_rates(p, threshold) for s, p in per_step.items()},
            "overall": step_rates(pooled, threshold), "first_error": first_error_f1(chains, threshold)}


def best_threshold(pairs: list[tuple[bool, float]]) -> float:
    """The threshold (a score below it reads as wrong) with the highest F1 of "wrong" on `pairs` of
    (truly wrong, score); 0.5 when there is no wrong example to choose it by."""
    if not any(t for t, _ in pairs):
        return 0.5
    scores = sorted({s for _, s in pairs})
    cuts = [(a + b) / 2 for a, b in zip(scores, scores[1:])] + [scores[-1] + 1e-6]
    return round(max(cuts, key=lambda c: (step_rates(pairs, c)["f1_wrong"] or 0.0, -abs(c - 0.5))), 6)
