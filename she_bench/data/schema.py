"""The example schema shared by every benchmark, and the error raised for bad input."""
from __future__ import annotations

from dataclasses import dataclass, field

STEPS = (
    "query_understanding",
    "item_understanding",
    "category_matching",
    "attribute_matching",
    "relevance_judgment",
)
STEP_TITLES = {
    "query_understanding": "Query understanding",
    "item_understanding": "Item understanding",
    "category_matching": "Category matching",
    "attribute_matching": "Attribute matching",
    "relevance_judgment": "Relevance judgment",
}
ESCI_LABELS = ("Exact", "Substitute", "Complement", "Irrelevant")


class DataError(ValueError):
    """Bad input data. The message names the file, the row or line, and the field."""

    def __init__(self, source: str, where: str | int | None, field_name: str | None, problem: str):
        self.source, self.where, self.field_name, self.problem = source, where, field_name, problem
        parts = [str(source)]
        if where is not None:
            parts.append(f"row {where}" if isinstance(where, int) else str(where))
        if field_name is not None:
            parts.append(f"field '{field_name}'")
        super().__init__(": ".join([", ".join(parts), problem]))


@dataclass
class Example:
    """One judged (query, item) pair.

    `item` maps field names (title, brand, color, category, ...) to text. `steps` holds the
    gold text of each annotated reasoning step (a subset of STEPS, possibly empty); the
    offline verifier checks exactly those. `facts` holds structured ground truth the
    verifier may use (for example the item's brand and colour). `slices` names every slice
    the example belongs to (e.g. "head", "tail", "type:negation"). `silver` holds rule-derived
    texts of steps no human annotated (data/silver.py): learned by the warm start, never verified.
    `rationale` says whether the pair's gold rationale may serve as an SFT target (the card's
    `rationale_share`); without it the pair is still a prompt with a label, and its steps are still
    verified, but no method is ever trained on its rationale.
    `teacher` holds the steps of the released rationale that differ from the gold ones (the card's
    `teacher_noise`: a distilled rationale with a wrong intermediate step and the human label), and
    `noise` says what was corrupted; the verifier and evaluation read `steps`, SFT targets read the
    rationale. `annotated` says whether the verifier knows this pair's intermediate steps (the card's
    `annotation_share`); the label is always known.
    """

    id: str
    query_id: str
    query: str
    item: dict[str, str]
    label: str
    query_type: str = "other"
    steps: dict[str, str] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    slices: list[str] = field(default_factory=list)
    silver: dict[str, str] = field(default_factory=dict)
    rationale: bool = True
    teacher: dict[str, str] = field(default_factory=dict)
    noise: str = ""
    annotated: bool = True

    def to_dict(self) -> dict:
        out = {
            "id": self.id, "query_id": self.query_id, "query": self.query, "item": self.item,
            "label": self.label, "query_type": self.query_type, "steps": self.steps,
            "facts": self.facts, "slices": self.slices,
        }
        if self.silver:  # absent when empty, so benchmarks without silver steps keep their data hash
            out["silver"] = self.silver
        if not self.rationale:  # absent when available, for the same reason
            out["rationale"] = False
        if self.teacher:  # the knobs' fields, likewise absent at their defaults
            out["teacher"], out["noise"] = self.teacher, self.noise
        if not self.annotated:
            out["annotated"] = False
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Example":
        return cls(**d)
