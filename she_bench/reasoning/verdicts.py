"""Verdicts: what a reasoning step decides, apart from what it copies.

A comparison step names what it compares, then gives its verdict after the last ': ' of each part:

    3. Category matching: boots vs sandals: same group
    4. Attribute matching: color=green vs blue: mismatch      (one part per constraint, joined by '; ')

The relevance-judgment step's verdict is the label it names. A step whose text holds no ': '
(attribute matching 'none': nothing to check) has no verdict. Copy steps (query and item
understanding) have none either: they decide nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from she_bench.reasoning.parser import normalize_label

VERDICT_STEPS = ("category_matching", "attribute_matching", "relevance_judgment")
SEP = ":"


def _clean(text: str) -> str:
    return " ".join(text.strip().strip(".").lower().split())


def _parts(text: str) -> list[str]:
    return [p for p in (q.strip() for q in text.split(";")) if p]


def verdict(step: str, text: str | None, labels: list[str]) -> str | None:
    """The verdict a step's text gives (None: no verdict): the label for the judgment step, else the
    text after the last ':' of each part, '; '-joined."""
    if text is None or step not in VERDICT_STEPS:
        return None
    if step == "relevance_judgment":
        return normalize_label(text, labels)
    found = [_clean(p.rsplit(SEP, 1)[1]) for p in _parts(text) if SEP in p]
    return "; ".join(found) if found else None


@dataclass(frozen=True)
class Split:
    """A gold step text cut before its (last) verdict: `prefix` ends with the ':' the verdict follows,
    `key` names what is compared (the part's key, '' for a plain step), `value` the verdict as written."""
    prefix: str
    key: str
    value: str


def split_verdict(step: str, text: str | None, labels: list[str]) -> Split | None:
    """Where a gold step's verdict starts (None: it has none). For the judgment step, the whole text."""
    if verdict(step, text, labels) is None:
        return None
    if step == "relevance_judgment":
        return Split(prefix="", key="", value=text.strip())
    cut = text.rindex(SEP)
    last = _parts(text)[-1]
    key = last.split("=", 1)[0].strip().lower() if "=" in last.split(SEP, 1)[0] else ""
    return Split(prefix=text[:cut + 1], key=key, value=text[cut + 1:].strip())


def verdict_correct(step: str, gold: str | None, pred: str | None, labels: list[str]) -> bool | None:
    """Whether a written step gives the gold verdict (None: the gold step has no verdict; a missing or
    verdict-less step is wrong)."""
    want = verdict(step, gold, labels)
    if want is None:
        return None
    return verdict(step, pred, labels) == want
