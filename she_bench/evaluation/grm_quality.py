"""How good the run's GRM is: its step verdicts on the model's own eval outputs against the verifier.

For every written step the verifier can check, the GRM's score is read as a verdict (wrong when
below 0.5) and compared with the verifier's. "Positive" is "this step is wrong", the case a
stepwise reward exists to catch: precision is the share of GRM-flagged steps that are really
wrong, recall the share of really wrong steps the GRM flags. A GRM that never flags anything has
high accuracy on a mostly-right policy and recall 0, so read the three together.
"""
from __future__ import annotations

from she_bench.data.schema import STEPS
from she_bench.reasoning.parser import parse


def _rates(pairs: list[tuple[bool, bool]]) -> dict:
    """pairs of (verifier says wrong, GRM says wrong)."""
    n = len(pairs)
    tp = sum(t and p for t, p in pairs)
    flagged = sum(p for _, p in pairs)
    wrong = sum(t for t, _ in pairs)
    return {
        "n": n, "wrong": wrong, "flagged": flagged,
        "accuracy": round(sum(t == p for t, p in pairs) / n, 6) if n else None,
        "precision_wrong": round(tp / flagged, 6) if flagged else None,
        "recall_wrong": round(tp / wrong, 6) if wrong else None,
    }


def grm_agreement(grm, examples_by_id: dict, records: list[dict], labels: list[str], name: str) -> dict:
    """Per-step and pooled agreement of `grm` with the verifier verdicts stored in `records`
    (predictions.jsonl rows), plus the GRM's own per-step "right" rate (step_accuracy_grm)."""
    parsed = [parse(r["text"], labels) for r in records]
    scores = grm.score([examples_by_id[r["id"]] for r in records], parsed)
    per_step: dict[str, list[tuple[bool, bool]]] = {s: [] for s in STEPS}
    judged_right: dict[str, list[bool]] = {s: [] for s in STEPS}
    for rec, score in zip(records, scores):
        for step in STEPS:
            s = score.get(step)
            if s is None:
                continue
            judged_right[step].append(s >= 0.5)
            verdict = (rec.get("step_verdicts") or {}).get(step)
            if verdict is not None:
                per_step[step].append((not verdict, s < 0.5))
    return {
        "grm": name,
        "steps": {s: _rates(p) for s, p in per_step.items()},
        "overall": _rates([x for p in per_step.values() for x in p]),
        "step_accuracy_grm": {s: (round(sum(v) / len(v), 6) if v else None) for s, v in judged_right.items()},
    }
