"""The five-step reasoning template: prompts in, gold rationales out.

A completion looks like

    1. Query understanding: intent=plain; category=boots
    2. Item understanding: category=boots; brand=zento; color=red; material=leather
    3. Category matching: same
    4. Attribute matching: none
    5. Relevance judgment: Exact
    Label: Exact
"""
from __future__ import annotations

from she_bench.data.schema import STEP_TITLES, STEPS, Example

INSTRUCTION = (
    "Judge how relevant the product is to the shopping query. Reason in five numbered steps "
    "(query understanding, item understanding, category matching, attribute matching, "
    "relevance judgment), then answer with 'Label: <label>', the label being one of {labels}."
)
ITEM_FIELDS_ORDER = ("title", "brand", "color", "category", "bullet_points", "description")


def render_item(item: dict[str, str]) -> str:
    keys = [k for k in ITEM_FIELDS_ORDER if item.get(k)] + sorted(k for k in item if k not in ITEM_FIELDS_ORDER and item[k])
    return "\n".join(f"{k}: {item[k]}" for k in keys)


def render_user_message(ex: Example, labels: list[str]) -> str:
    return f"{INSTRUCTION.format(labels=', '.join(labels))}\nQuery: {ex.query}\nProduct:\n{render_item(ex.item)}"


def render_prompt(ex: Example, labels: list[str], tokenizer=None) -> str:
    """The text the policy continues. Uses the tokenizer's chat template when it has one."""
    message = render_user_message(ex, labels)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
        )
    return f"Query: {ex.query}\nProduct: {render_item(ex.item)}\nSteps:\n"


def step_line(index: int, step: str, text: str) -> str:
    return f"{index}. {STEP_TITLES[step]}: {text}"


def render_rationale(steps: dict[str, str], label: str) -> str:
    """The completion for a set of step texts; steps missing from `steps` are written as '?'."""
    lines = [step_line(i, s, steps.get(s, "?")) for i, s in enumerate(STEPS, start=1)]
    return "\n".join(lines + [f"Label: {label}"])


def gold_rationale(ex: Example) -> str:
    """The SFT target: the annotated steps, silver steps where no human annotated one, and the label
    as the judgment when unannotated."""
    steps = {**ex.silver, **ex.steps}
    steps.setdefault("relevance_judgment", ex.label)
    return render_rationale(steps, ex.label)
