"""Tests for the toyshop generator: determinism, splits, slices, and the label rules."""
from __future__ import annotations

from collections import Counter

import pytest

import she_bench.data.toyshop as toyshop
from she_bench.data.cards import CARDS_DIR, Card
from she_bench.data.schema import STEPS, DataError

RARE = {"negation", "substitute", "accessory"}


@pytest.fixture(scope="module")
def data():
    return toyshop.generate(seed=0)


def pairs(text: str) -> dict[str, str]:
    return {} if text == "none" else dict(p.split("=", 1) for p in text.split("; "))


def compared(text: str) -> tuple[str, str, str]:
    """'green vs blue: mismatch' -> ('green', 'blue', 'mismatch')"""
    values, verdict = text.rsplit(": ", 1)
    query_value, item_value = values.split(" vs ")
    return query_value, item_value, verdict


def label_from_steps(intent: str, steps: dict[str, str]) -> str:
    """The label rules, written again from the step texts alone."""
    rel = compared(steps["category_matching"])[2]
    checks = {k: compared(v)[2] for k, v in pairs(steps["attribute_matching"]).items()}
    if intent == "accessory":
        return {"complement": "Exact", "same": "Complement", "same group": "Irrelevant", "unrelated": "Irrelevant"}[rel]
    if rel == "same group":
        return "Substitute"
    if rel == "complement":
        return "Complement"
    if rel == "unrelated":
        return "Irrelevant"
    assert rel == "same"
    if intent == "substitute":
        return "Exact" if checks["brand"] == "different" else "Substitute"
    return "Exact" if all(v in ("match", "ok") for v in checks.values()) else "Substitute"


def test_deterministic(data):
    again = toyshop.generate(seed=0)
    other = toyshop.generate(seed=1)
    for split in ("train", "dev", "test"):
        assert [e.to_dict() for e in data[split]] == [e.to_dict() for e in again[split]]
    assert [e.to_dict() for e in data["test"]] != [e.to_dict() for e in other["test"]]


def test_card_loads_defaults(data):
    card = Card.from_yaml(CARDS_DIR / "toyshop.yaml")
    assert card.options["seed"] == 0 and card.labels == list(toyshop.LABELS)
    assert card.annotated_steps == list(STEPS)
    loaded = toyshop.load_toyshop(card, None)
    assert [e.id for e in loaded["test"]] == [e.id for e in data["test"]]
    with pytest.raises(DataError, match="options.n_trian"):
        toyshop.load_toyshop(Card(name="t", loader="toyshop", options={"n_trian": 5}), None)


def test_sizes_and_disjoint_splits(data):
    assert [len(data[s]) for s in ("train", "dev", "test")] == [20000, 1000, 2000]
    qids = {s: {e.query_id for e in exs} for s, exs in data.items()}
    assert not (qids["train"] & qids["dev"]) and not (qids["train"] & qids["test"]) and not (qids["dev"] & qids["test"])
    ids = [e.id for exs in data.values() for e in exs]
    assert len(ids) == len(set(ids))
    per_query = Counter(e.query_id for e in data["train"])
    assert max(per_query.values()) <= 4 and sum(per_query.values()) / len(per_query) > 2


def test_test_slices(data):
    test = data["test"]
    for e in test:
        assert ("head" in e.slices) != ("tail" in e.slices)
        assert f"type:{e.query_type}" in e.slices
    slices = Counter(s for e in test for s in e.slices)
    assert slices["head"] == 1000 and slices["tail"] == 1000
    assert slices["unseen_combo"] == 250
    assert all("tail" in e.slices for e in test if "unseen_combo" in e.slices)


def test_tail_definition(data):
    world = toyshop.build_world(0)
    assert 0.10 < sum(world.popularity[c] for c in world.tail) <= 0.15
    for e in data["train"] + data["test"]:
        tail = e.facts["query_category"] in world.tail or e.query_type in RARE
        assert ("tail" in e.slices) == tail


def test_unseen_combos_absent_from_train_and_dev(data):
    world = toyshop.build_world(0)
    assert len(world.heldout) == 10 and all(t != "plain" for _, t in world.heldout)
    for split in ("train", "dev"):
        seen = {(e.facts["query_category"], e.query_type) for e in data[split]}
        assert not seen & set(world.heldout)
        assert not any("unseen_combo" in e.slices for e in data[split])
    unseen = {(e.facts["query_category"], e.query_type) for e in data["test"] if "unseen_combo" in e.slices}
    assert unseen == set(world.heldout)


def test_steps_and_labels_consistent(data):
    for e in (e for exs in data.values() for e in exs):
        assert list(e.steps) == list(STEPS)
        assert e.steps["relevance_judgment"] == e.label
        assert label_from_steps(e.query_type, e.steps) == e.label, e
        item = pairs(e.steps["item_understanding"])
        assert list(item) == ["category", "brand", "color", "material"]
        # the title states every item fact: "Brand Colour Material Category"
        assert list(e.item) == ["title"]
        assert e.item["title"].lower() == " ".join(item[k] for k in ("brand", "color", "material", "category"))
        query = pairs(e.steps["query_understanding"])
        assert query["intent"] == e.query_type and {f"query_{k}": v for k, v in query.items()} == {
            k: v for k, v in e.facts.items() if k.startswith("query_")}
        # one check per query constraint, in key order, naming the query's value and the item's value
        constraints = [k for k in query if k not in ("intent", "category")]
        checks = pairs(e.steps["attribute_matching"])
        assert list(checks) == constraints
        for key, text in checks.items():
            query_value, item_value, _ = compared(text)
            assert query_value == query[key] and item_value == item["material" if key == "exclude" else key]
        assert compared(e.steps["category_matching"])[:2] == (query["category"], item["category"])


def test_relations_never_overlap():
    for a in toyshop.CATEGORIES:
        for b in toyshop.PARTNERS[a]:
            assert toyshop.GROUP[a] != toyshop.GROUP[b] and a in toyshop.PARTNERS[b]


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_label_shares(data, split):
    # An evaluation split's head holds the queries train covers most: excluding train's pairs must not
    # thin out their Exact items (the easiest pairs to repeat), there or overall.
    for exs in (data[split], [e for e in data[split] if "head" in e.slices]):
        shares = {k: v / len(exs) for k, v in Counter(e.label for e in exs).items()}
        for label, target in {"Exact": 0.40, "Substitute": 0.30, "Complement": 0.12, "Irrelevant": 0.18}.items():
            assert abs(shares[label] - target) < 0.035, shares


def test_rare_types_rare_in_train(data):
    types = Counter(e.query_type for e in data["train"])
    for t in RARE:
        assert 0 < types[t] / len(data["train"]) < 0.08
    assert types["plain"] > types["attribute"] > types["brand"] > max(types[t] for t in RARE)
    tail_share = sum("tail" in e.slices for e in data["train"]) / len(data["train"])
    assert 0.15 < tail_share < 0.35


def test_no_dev_or_test_pair_repeats_a_train_pair(data):
    train = {(ex.query, ex.item["title"]) for ex in data["train"]}
    for split in ("dev", "test"):
        assert not [ex.id for ex in data[split] if (ex.query, ex.item["title"]) in train], split
    assert len(data["dev"]) == 1000 and len(data["test"]) == 2000  # sizes kept


def test_data_card_reports_overlap_with_train():
    from she_bench.data.cards import load_benchmark
    from she_bench.data.describe import describe, format_card

    card = describe(load_benchmark("toyshop"))
    test = card["splits"]["test"]["overlap_with_train"]
    assert test["pairs_identical"] == 0
    assert 0 < test["query_strings_seen"] < test["query_strings"]
    assert 0 < test["pairs_with_seen_query_share"] < 1
    assert "overlap_with_train" not in card["splits"]["train"]
    assert "identical (query, item) pairs" in format_card(card)
