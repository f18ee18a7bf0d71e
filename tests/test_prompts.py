"""Prompt options (style, shots, product fields) and the query-stratified evaluation subset."""
from collections import Counter
from types import SimpleNamespace

from she_bench.config import PromptConfig
from she_bench.data.schema import Example
from she_bench.data.selection import stratified_subset
from she_bench.evaluation.evaluate import prompt_shots
from she_bench.evaluation.metrics import compute_metrics
from she_bench.reasoning.template import render_prompt
from she_bench.rewards.verifier import score_output

LABELS = ["Exact", "Substitute", "Complement", "Irrelevant"]


def ex(i, q, label="Exact"):
    return Example(id=f"e{i}", query_id=f"q{q}", query=f"query {q}", label=label,
                   item={"title": "A long product title " * 5, "brand": "Acme", "description": "words " * 50})


def test_stratified_subset_keeps_every_query_and_is_fixed():
    examples = [ex(i, i % 7) for i in range(100)]
    sub = stratified_subset(examples, 30)
    assert len(sub) >= 30 and {e.query_id for e in sub} == {e.query_id for e in examples}
    per_query = Counter(e.query_id for e in sub)
    assert max(per_query.values()) - min(per_query.values()) <= 1  # same share of every query
    assert sub == stratified_subset(list(examples), 30) and stratified_subset(examples, 500) == examples


def test_prompt_fields_clip_and_label_style():
    p = PromptConfig(style="label", item_fields=["title", "brand"], field_chars=10)
    text = render_prompt(ex(0, 0), LABELS, prompt=p)
    assert "Product: title: A long pro\nbrand: Acme" in text and "description" not in text and "Steps:" not in text
    assert render_prompt(ex(0, 0), LABELS).endswith("Steps:\n")  # the default is unchanged
    label_only = score_output(ex(0, 0), "Label: Exact", LABELS, steps_required=False)
    assert label_only["format_valid"] and label_only["pred"] == "Exact"
    # no step was asked for, so none is verified: step metrics are n/a, never a 0 that reads as 'all wrong'
    assert label_only["step_verdicts"] == {}
    metrics = compute_metrics([{"id": "e0", "query_id": "q0", "gold": "Exact", **label_only}], LABELS, LABELS[:2], [],
                              n_boot=0)
    assert metrics["overall"]["chain_accuracy"] is None
    assert all(v is None for v in metrics["overall"]["step_accuracy"].values())
    assert not score_output(ex(0, 0), "Label: Exact", LABELS)["format_valid"]  # steps required by default


def test_shots_cycle_through_labels_and_follow_the_seed():
    train = [ex(i, i, LABELS[i % 4]) for i in range(40)]
    bench = SimpleNamespace(labels=LABELS, splits={"train": train})
    cfg = SimpleNamespace(seed=0, prompt=PromptConfig(shots=4))
    shots = prompt_shots(bench, cfg)
    assert [s.label for s in shots] == LABELS
    other = prompt_shots(bench, SimpleNamespace(seed=1, prompt=PromptConfig(shots=4)))
    assert [s.id for s in other] != [s.id for s in shots]
    text = render_prompt(ex(99, 99), LABELS, prompt=PromptConfig(style="label"), shots=shots)
    assert text.count("Label: ") == 4 and text.endswith("Product: title: " + "A long product title " * 5 + "\nbrand: Acme"
                                                        "\ndescription: " + "words " * 50 + "\n")
