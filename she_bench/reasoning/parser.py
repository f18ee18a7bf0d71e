"""Turn any model output into steps, a label and a parse status, without ever raising."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from she_bench.data.schema import STEP_TITLES, STEPS

_STEP_RE = re.compile(r"^[ \t]*(?:step[ \t]*)?([1-9])[.):][ \t]*(?:([A-Za-z][A-Za-z ]*?)[ \t]*:)?[ \t]*(.*?)[ \t]*$",
                      re.I | re.M)
_LABEL_RE = re.compile(r"^[ \t]*(?:final[ \t]+)?label[ \t]*[:=][ \t]*\**[ \t]*([A-Za-z][A-Za-z -]*?)[ \t.*]*$",
                       re.I | re.M)
_TITLE_TO_STEP = {t.lower(): s for s, t in STEP_TITLES.items()}

# Parse statuses; only OK counts as format-valid.
OK, NO_LABEL, BAD_LABEL, MISSING_STEPS, EMPTY = "ok", "no_label", "invalid_label", "missing_steps", "empty"


@dataclass
class Parsed:
    steps: dict[str, str] = field(default_factory=dict)
    step_spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # char span of each step line
    label: str | None = None
    label_span: tuple[int, int] | None = None
    judgment: str | None = None  # label named inside the relevance-judgment step
    status: str = EMPTY

    @property
    def valid(self) -> bool:
        return self.status == OK


def normalize_label(text: str | None, labels: list[str]) -> str | None:
    """Map free text to one of `labels`: exact (case-insensitive) name, then a unique prefix."""
    if not text:
        return None
    t = text.strip().strip("*.'\"").lower()
    for lab in labels:
        if t == lab.lower():
            return lab
    hits = [lab for lab in labels if t and lab.lower().startswith(t)]
    if len(hits) == 1:
        return hits[0]
    words = t.split()
    hits = [lab for lab in labels if words and words[0].strip(",.;:!") == lab.lower()]
    return hits[0] if len(hits) == 1 else None


def parse(text: str, labels: list[str]) -> Parsed:
    try:
        return _parse(text if isinstance(text, str) else str(text), labels)
    except Exception:  # the parser must never take a run down; an oddity is a parse failure
        return Parsed(status=EMPTY)


def _parse(text: str, labels: list[str]) -> Parsed:
    out = Parsed()
    if not text.strip():
        return out
    for m in _STEP_RE.finditer(text):
        number, title, body = int(m.group(1)), (m.group(2) or "").strip().lower(), m.group(3)
        step = _TITLE_TO_STEP.get(title) or (STEPS[number - 1] if number <= len(STEPS) else None)
        if step is None or step in out.steps:
            continue  # first occurrence of each step wins
        out.steps[step] = body
        out.step_spans[step] = (m.start(), m.end())
    label_matches = list(_LABEL_RE.finditer(text))
    raw_label = None
    if label_matches:
        m = label_matches[-1]
        raw_label = m.group(1)
        out.label = normalize_label(raw_label, labels)
        out.label_span = (m.start(), m.end())
    if "relevance_judgment" in out.steps:
        out.judgment = normalize_label(out.steps["relevance_judgment"], labels)
    if raw_label is None:
        out.status = NO_LABEL
    elif out.label is None:
        out.status = BAD_LABEL
    elif len(out.steps) < len(STEPS):
        out.status = MISSING_STEPS
    else:
        out.status = OK
    return out
