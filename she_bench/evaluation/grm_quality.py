"""How good the run's GRM is on the model's own eval outputs, against the verifier verdicts they hold:
the step-judge measures of rewards/judge_quality.py (AUROC, F1 of "wrong", first-error F1) at the GRM's
threshold. Where no step truth exists (silver steps of real data) nothing is measured."""
from __future__ import annotations

from she_bench.data.schema import STEPS
from she_bench.reasoning.parser import parse
from she_bench.rewards.judge_quality import judge_quality


def grm_agreement(grm, examples_by_id: dict, records: list[dict], labels: list[str], name: str) -> dict:
    """The GRM's quality on a run's own outputs (predictions.jsonl rows, whose verifier verdicts they hold),
    at the GRM's threshold, plus its own per-step "right" rate (step_accuracy_grm)."""
    parsed = [parse(r["text"], labels) for r in records]
    scores = grm.score([examples_by_id[r["id"]] for r in records], parsed)
    threshold = getattr(grm, "threshold", 0.5)
    judged_right: dict[str, list[bool]] = {s: [] for s in STEPS}
    for score in scores:
        for step in STEPS:
            if score.get(step) is not None:
                judged_right[step].append(score[step] >= threshold)
    quality = judge_quality([(r.get("step_verdicts") or {}, sc) for r, sc in zip(records, scores)], threshold)
    return {"grm": name, **quality,
            "step_accuracy_grm": {s: (round(sum(v) / len(v), 6) if v else None) for s, v in judged_right.items()}}
