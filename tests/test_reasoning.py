from hypothesis import given, settings
from hypothesis import strategies as st

from she_bench.data.schema import ESCI_LABELS, STEPS, Example
from she_bench.reasoning.parser import (
    BAD_LABEL,
    EMPTY,
    MISSING_STEPS,
    NO_LABEL,
    OK,
    _parse,
    normalize_label,
    parse,
)
from she_bench.reasoning.template import gold_rationale, render_prompt, render_rationale
from she_bench.rewards.verifier import outcome_reward, step_matches, verify_steps

LABELS = list(ESCI_LABELS)
step_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85"), max_size=40).map(str.strip)


def make_example(**kw) -> Example:
    base = dict(id="x1", query_id="q1", query="red boots", item={"title": "Zento Red Leather Boots"}, label="Exact",
                steps={"query_understanding": "intent=attribute; category=boots; color=red",
                       "item_understanding": "category=boots; brand=zento; color=red; material=leather",
                       "category_matching": "same", "attribute_matching": "color=match", "relevance_judgment": "Exact"})
    base.update(kw)
    return Example(**base)


@settings(max_examples=200, deadline=None)
@given(steps=st.fixed_dictionaries({s: step_text for s in STEPS}), label=st.sampled_from(LABELS))
def test_rendered_rationale_round_trips(steps, label):
    parsed = parse(render_rationale(steps, label), LABELS)
    assert parsed.status == OK
    assert parsed.label == label
    assert parsed.steps == steps


RATIONALE_BITS = st.sampled_from(["1. Query understanding: ", "2.", "5) Relevance judgment:", "Step 3: ",
                                   "Label: ", "label = ", "Exact", "sub", "**", "\n", " ", "=", ";", ":", "9."])


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.text(max_size=400), st.lists(st.one_of(RATIONALE_BITS, st.text(max_size=8)), max_size=40).map("".join)))
def test_arbitrary_text_never_raises(text):
    # the real parser, not `parse`, whose catch-all would hide an exception
    parsed = _parse(text, LABELS)
    assert parsed.status in {OK, NO_LABEL, BAD_LABEL, MISSING_STEPS, EMPTY}
    assert parsed.label is None or parsed.label in LABELS
    assert all(0 <= a <= b <= len(text) for a, b in parsed.step_spans.values())
    assert set(parsed.step_spans) == set(parsed.steps)


def test_gold_rationale_parses_to_annotation_and_verifies():
    ex = make_example()
    parsed = parse(gold_rationale(ex), LABELS)
    assert parsed.valid and parsed.label == "Exact" and parsed.judgment == "Exact"
    assert parsed.steps == ex.steps
    assert verify_steps(ex, parsed, LABELS) == {s: True for s in STEPS}


def test_parse_statuses():
    assert parse("", LABELS).status == EMPTY
    assert parse("1. Query understanding: x", LABELS).status == NO_LABEL
    assert parse("Label: maybe", LABELS).status == BAD_LABEL
    p = parse("1. Query understanding: x\nLabel: sub", LABELS)
    assert p.status == MISSING_STEPS and p.label == "Substitute"
    # the last label line wins; step spans point at their lines
    text = render_rationale({s: "a" for s in STEPS}, "Exact") + "\nLabel: Irrelevant"
    p = parse(text, LABELS)
    assert p.label == "Irrelevant"
    start, end = p.step_spans["category_matching"]
    assert text[start:end] == "3. Category matching: a"


def test_normalize_label():
    assert normalize_label("exact", LABELS) == "Exact"
    assert normalize_label("C", LABELS) == "Complement"
    assert normalize_label("Substitute, because", LABELS) == "Substitute"
    assert normalize_label("Irrelevant item", LABELS) == "Irrelevant"
    assert normalize_label("nonsense", LABELS) is None
    assert normalize_label("", LABELS) is None


def test_verifier_checks_each_step():
    ex = make_example()
    steps = dict(ex.steps)
    steps["item_understanding"] = "brand=zento; category=boots; material=leather;color=RED"  # order, case, spacing
    steps["attribute_matching"] = "color=mismatch"
    steps["relevance_judgment"] = "Substitute"
    del steps["category_matching"]
    v = verify_steps(ex, parse(render_rationale(steps, "Exact"), LABELS), LABELS)
    assert v == {"query_understanding": True, "item_understanding": True, "category_matching": False,
                 "attribute_matching": False, "relevance_judgment": False}


def test_verifier_skips_unannotated_steps():
    ex = make_example(steps={"item_understanding": "brand=zento"})
    v = verify_steps(ex, parse(render_rationale({"item_understanding": "brand=zento"}, "Exact"), LABELS), LABELS)
    assert v["item_understanding"] is True
    assert all(v[s] is None for s in STEPS if s != "item_understanding")


def test_step_matches():
    assert step_matches("same group", " Same   group ")
    assert not step_matches("same", "same group")
    assert not step_matches("category=boots; color=red", "category=boots")  # a missing fact is wrong
    assert not step_matches("category=boots", "category=boots; color=red")  # so is an invented one


def test_outcome_reward():
    assert outcome_reward("Exact", "Exact", LABELS) == 1.0
    assert outcome_reward("Exact", None, LABELS) == 0.0
    assert outcome_reward("Exact", "Substitute", LABELS) == 0.0
    assert outcome_reward("Exact", "Substitute", LABELS, ordinal_credit=0.5) == 0.5
    assert outcome_reward("Exact", "Complement", LABELS, ordinal_credit=0.5) == 0.25


def test_prompt_without_chat_template_is_plain():
    ex = make_example()
    prompt = render_prompt(ex, LABELS)
    assert prompt.startswith("Query: red boots\nProduct: title: Zento Red Leather Boots")
