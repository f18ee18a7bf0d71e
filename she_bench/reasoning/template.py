"""The five-step reasoning template: prompts in, gold rationales out.

A completion looks like

    1. Query understanding: intent=attribute; category=boots; color=green
    2. Item understanding: category=boots; brand=pexa; color=blue; material=leather
    3. Category matching: boots vs boots: same
    4. Attribute matching: color=green vs blue: mismatch
    5. Relevance judgment: Substitute
    Label: Substitute

The comparison steps (3 and 4) name what they compare, the query's value and the item's value,
before their verdict (reasoning/verdicts.py reads it back).
"""
from __future__ import annotations

from she_bench.data.schema import STEP_TITLES, STEPS, Example

INSTRUCTION = (
    "Judge how relevant the product is to the shopping query. Reason in five numbered steps "
    "(query understanding, item understanding, category matching, attribute matching, "
    "relevance judgment), then answer with 'Label: <label>', the label being one of {labels}."
)
LABEL_INSTRUCTION = (
    "Judge how relevant the product is to the shopping query. Answer with one line, 'Label: <label>', "
    "the label being one of {labels}."
)
PROMPT_STYLES = ("steps", "label")
ITEM_FIELDS_ORDER = ("title", "brand", "color", "category", "bullet_points", "description")


def render_item(item: dict[str, str], fields: list[str] | None = None, chars: int | None = None) -> str:
    """The product as `field: value` lines: `fields` in that order (default: the usual order, then the rest),
    each value clipped to `chars` characters."""
    if fields is None:
        fields = [k for k in ITEM_FIELDS_ORDER if k in item] + sorted(k for k in item if k not in ITEM_FIELDS_ORDER)
    return "\n".join(f"{k}: {str(item[k])[:chars] if chars else item[k]}" for k in fields if item.get(k))


def render_user_message(ex: Example, labels: list[str], prompt=None) -> str:
    style = getattr(prompt, "style", "steps")
    instruction = (LABEL_INSTRUCTION if style == "label" else INSTRUCTION).format(labels=", ".join(labels))
    item = render_item(ex.item, getattr(prompt, "item_fields", None), getattr(prompt, "field_chars", None))
    return f"{instruction}\nQuery: {ex.query}\nProduct:\n{item}"


def answer(ex: Example, prompt=None) -> str:
    """What a worked example answers in the prompt's style."""
    return f"Label: {ex.label}" if getattr(prompt, "style", "steps") == "label" else gold_rationale(ex)


def render_prompt(ex: Example, labels: list[str], tokenizer=None, prompt=None, shots: list[Example] = ()) -> str:
    """The text the policy continues. Uses the tokenizer's chat template when it has one; `prompt` (a
    config.PromptConfig) picks the style and the product fields; `shots` are worked examples shown first."""
    if getattr(prompt, "style", "steps") not in PROMPT_STYLES:
        raise ValueError(f"prompt.style: unknown style {prompt.style!r} (known: {', '.join(PROMPT_STYLES)})")
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        turns = []
        for shot in shots:
            turns += [{"role": "user", "content": render_user_message(shot, labels, prompt)},
                      {"role": "assistant", "content": answer(shot, prompt)}]
        turns.append({"role": "user", "content": render_user_message(ex, labels, prompt)})
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    fields, chars = getattr(prompt, "item_fields", None), getattr(prompt, "field_chars", None)
    head = "" if getattr(prompt, "style", "steps") == "label" else "Steps:\n"
    demos = "".join(f"Query: {s.query}\nProduct: {render_item(s.item, fields, chars)}\n{head}{answer(s, prompt)}\n\n"
                    for s in shots)
    return f"{demos}Query: {ex.query}\nProduct: {render_item(ex.item, fields, chars)}\n{head}"


def step_line(index: int, step: str, text: str) -> str:
    return f"{index}. {STEP_TITLES[step]}: {text}"


def render_rationale(steps: dict[str, str], label: str) -> str:
    """The completion for a set of step texts; steps missing from `steps` are written as '?'."""
    lines = [step_line(i, s, steps.get(s, "?")) for i, s in enumerate(STEPS, start=1)]
    return "\n".join(lines + [f"Label: {label}"])


def gold_rationale(ex: Example, withheld_ok: bool = False, clean: bool = False) -> str:
    """The SFT target: the annotated steps, silver steps where no human annotated one, and the label
    as the judgment when unannotated; the teacher's corrupted steps where the card's teacher_noise put
    them, unless `clean` (the gold chain itself: evaluation, the GRM's labelled rows, the oracle control).
    A pair whose rationale the card withholds (`rationale_share`) is refused, so no SFT target can leak
    it; only `withheld_ok` (the toy tokenizer's corpus, evaluation, the oracle control) reads it."""
    if not ex.rationale and not withheld_ok:
        raise ValueError(f"{ex.id}: its gold rationale is withheld by the card's rationale_share; "
                         "train on with_rationale(examples)")
    steps = {**ex.silver, **ex.steps, **({} if clean else ex.teacher)}
    steps.setdefault("relevance_judgment", ex.label)
    return render_rationale(steps, ex.label)


def with_rationale(examples: list[Example]) -> list[Example]:
    """The pairs whose gold rationale may be an SFT target (the card's `rationale_share`)."""
    return [ex for ex in examples if ex.rationale]
