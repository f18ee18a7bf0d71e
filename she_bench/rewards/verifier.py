"""The offline verifier: checks annotated steps and the final label against ground truth.

A step is checked only where the example annotates it (`Example.steps`); elsewhere the
verdict is None and the generative reward model covers it. Step texts in `key=value; ...`
form are compared as sets of pairs, so key order and spacing do not matter; other text is
compared after normalising case and whitespace. The relevance-judgment step is checked by
the label it names.
"""
from __future__ import annotations

import re

from she_bench.config import FORMAT_MODES
from she_bench.data.schema import STEPS, Example
from she_bench.reasoning.parser import Parsed, normalize_label, parse
from she_bench.reasoning.verdicts import VERDICT_STEPS, verdict_correct


def _pairs(text: str) -> dict[str, str] | None:
    parts = [p.strip() for p in re.split(r"[;,]", text) if p.strip()]
    if not parts or not all("=" in p for p in parts):
        return None
    return {k.strip().lower(): " ".join(v.split()).lower() for k, v in (p.split("=", 1) for p in parts)}


def _norm(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def step_matches(gold: str, pred: str) -> bool:
    gold_pairs = _pairs(gold)
    if gold_pairs is not None:
        return _pairs(pred) == gold_pairs
    return _norm(gold) == _norm(pred)


def verify_steps(ex: Example, parsed: Parsed, labels: list[str]) -> dict[str, bool | None]:
    verdicts: dict[str, bool | None] = {}
    for step in STEPS:
        gold = ex.steps.get(step)
        if gold is None:
            verdicts[step] = None
        elif step not in parsed.steps:
            verdicts[step] = False
        elif step == "relevance_judgment":
            verdicts[step] = normalize_label(parsed.steps[step], labels) == normalize_label(gold, labels)
        else:
            verdicts[step] = step_matches(gold, parsed.steps[step])
    return verdicts


def outcome_reward(gold: str, pred: str | None, labels: list[str], ordinal_credit: float = 0.0) -> float:
    """1 for the gold label, 0 for an unparsable answer; with `ordinal_credit` > 0 a wrong
    label one grade away on the card's ordered scale earns that much, two grades away half."""
    if pred is None:
        return 0.0
    if pred == gold:
        return 1.0
    if ordinal_credit <= 0 or gold not in labels or pred not in labels:
        return 0.0
    distance = abs(labels.index(gold) - labels.index(pred))
    return max(0.0, ordinal_credit / (2 ** (distance - 1)))


def well_formed(parsed: Parsed) -> bool:
    """Every step present and non-empty, a label that parses, and a judgment step that names
    that same label: what the format gate asks before any outcome reward is paid."""
    return (parsed.label is not None and all(parsed.steps.get(s, "").strip() for s in STEPS)
            and parsed.judgment == parsed.label)


def shaped_outcome(gold: str, parsed: Parsed, labels: list[str], ordinal_credit: float = 0.0,
                   format_mode: str = "gate", format_penalty: float = 0.5) -> float:
    """The RL outcome reward. `gate`: 0 unless the output is well formed, so a policy cannot earn
    reward by dropping or contradicting reasoning steps; `penalty`: `format_penalty` subtracted from
    a malformed output's reward; `off`: the label alone decides."""
    if format_mode not in FORMAT_MODES:
        raise ValueError(f"unknown reward.format '{format_mode}' (known: {', '.join(FORMAT_MODES)})")
    reward = outcome_reward(gold, parsed.label, labels, ordinal_credit)
    if format_mode == "off" or well_formed(parsed):
        return reward
    return 0.0 if format_mode == "gate" else reward - format_penalty


def check(ex: Example, text: str, labels: list[str]) -> tuple[Parsed, dict[str, bool | None]]:
    """Parse and verify one model output: the one scoring behind evaluation, rollouts and RL rewards."""
    parsed = parse(text, labels)
    return parsed, verify_steps(ex, parsed, labels)


def score_output(ex: Example, text: str, labels: list[str], steps_required: bool = True) -> dict:
    """`check` as a prediction record (evaluation, offline rollouts). Without `steps_required` (a label-only
    prompt), an output is format-valid when its label parses, and no step is verified: none was asked for,
    so step metrics are n/a rather than 'wrong'."""
    parsed, verdicts = check(ex, text, labels)
    decided = {s: verdict_correct(s, ex.steps.get(s), parsed.steps.get(s), labels) for s in VERDICT_STEPS}
    return {
        "pred": parsed.label, "status": parsed.status,
        "format_valid": parsed.valid if steps_required else parsed.label is not None,
        "well_formed": well_formed(parsed), "judgment": parsed.judgment, "steps": parsed.steps,
        "step_verdicts": verdicts if steps_required else {},
        "verdict_correct": decided if steps_required else {},
    }
