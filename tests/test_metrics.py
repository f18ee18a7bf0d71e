import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from she_bench.data.schema import ESCI_LABELS, STEPS, DataError
from she_bench.evaluation.metrics import (
    _cm_scores,
    _Encoded,
    _point_scores,
    compute_metrics,
)

LABELS = list(ESCI_LABELS)  # Exact, Substitute, Complement, Irrelevant
GOOD = ["Exact", "Substitute"]
QU, IU, CM, AM, RJ = STEPS


def rec(i, q, gold, pred, slices=(), judgment=None, steps=None, grm=None, entropy=None,
        format_valid=True):
    r = {"id": f"e{i}", "query_id": q, "slices": list(slices), "gold": gold, "pred": pred,
         "format_valid": format_valid, "judgment": judgment, "step_verdicts": steps or {},
         "entropy": entropy}
    if grm is not None:
        r["grm_verdicts"] = grm
    return r


def tiny():
    """6 records, 3 queries; hand-computed values are in the tests below."""
    return [
        rec(1, "q1", "Exact", "Exact", ["head"], "Exact",
            {s: True for s in STEPS}, {QU: True, AM: False}, 1.0),
        rec(2, "q1", "Exact", "Complement", ["head"], "Exact",
            {QU: True, IU: True, CM: False, AM: None, RJ: False}, None, 2.0),
        rec(3, "q2", "Substitute", "Substitute", ["head"], None,
            {s: None for s in STEPS}, None, None),
        rec(4, "q2", "Substitute", None, ["head"], "Substitute", {}, None, 3.0,
            format_valid=False),
        rec(5, "q3", "Irrelevant", "Irrelevant", ["tail"], "Irrelevant",
            {QU: False, IU: True, CM: True, AM: True, RJ: True}, {AM: True}, None),
        rec(6, "q3", "Complement", "Complement", ["tail"], "Complement",
            {IU: True, RJ: True}, None, 0.0),
    ]


@pytest.fixture(scope="module")
def tiny_metrics():
    return compute_metrics(tiny(), LABELS, GOOD, ["head", "tail", "nobody"], n_boot=200, seed=1)


def test_label_metrics_by_hand(tiny_metrics):
    m = tiny_metrics["overall"]
    assert tiny_metrics["n"] == 6 and m["n"] == 6 and m["n_queries"] == 3
    # correct: 1, 3, 5, 6; the unparsable prediction (4) is wrong, not dropped
    assert m["accuracy"]["value"] == round(4 / 6, 4)
    # Exact: tp1 fn1 -> 2/3; Substitute: tp1 fn1 (the None) -> 2/3;
    # Complement: tp1 fp1 -> 2/3; Irrelevant: tp1 -> 1
    assert m["per_class_f1"] == {"Exact": round(2 / 3, 4), "Substitute": round(2 / 3, 4),
                                 "Complement": round(2 / 3, 4), "Irrelevant": 1.0}
    assert m["macro_f1"]["value"] == round((3 * 2 / 3 + 1) / 4, 4) == 0.75
    # good = {Exact, Substitute}: gold good = 1,2,3,4; pred good = 1,3 (None is not good)
    # tp 2, fn 2, fp 0 -> 2*2 / (2*2 + 2) = 2/3
    assert m["good_f1"]["value"] == round(2 / 3, 4)
    assert m["parse_failures"] == 1
    assert m["format_valid_rate"] == round(5 / 6, 4)


def test_label_metrics_match_sklearn_directly():
    recs = tiny()
    gold = [r["gold"] for r in recs]
    pred = [r["pred"] if r["pred"] is not None else "<unparsable>" for r in recs]
    m = compute_metrics(recs, LABELS, GOOD, [], n_boot=0)["overall"]
    assert m["accuracy"]["value"] == round(accuracy_score(gold, pred), 4)
    assert m["macro_f1"]["value"] == round(
        f1_score(gold, pred, labels=LABELS, average="macro", zero_division=0), 4)
    assert m["good_f1"]["value"] == round(
        f1_score([g in GOOD for g in gold], [p in GOOD for p in pred], zero_division=0), 4)
    assert m["accuracy"]["ci95"] is None


def test_step_and_chain_metrics_by_hand(tiny_metrics):
    m = tiny_metrics["overall"]
    # checked: QU 1T 2T 5F; IU 1,2,5,6 T; CM 1T 2F 5T; AM 1T 5T (2 is None); RJ 1T 2F 5T 6T
    assert m["step_accuracy"] == {QU: round(2 / 3, 4), IU: 1.0, CM: round(2 / 3, 4), AM: 1.0,
                                  RJ: 0.75}
    assert m["step_accuracy_grm"] == {QU: 1.0, IU: None, CM: None, AM: 0.5, RJ: None}
    # records with a checked step: 1, 2, 5, 6; all-true: 1, 6
    assert m["chain_accuracy"] == 0.5 and m["chain_n"] == 4
    assert m["first_wrong_step"] == {QU: 1, IU: 0, CM: 1, AM: 0, RJ: 0, "none": 2}


def test_consistency_and_entropy_by_hand(tiny_metrics):
    m = tiny_metrics["overall"]
    # pairs with both set: 1 (E=E), 2 (E!=C), 5, 6 -> 3/4; record 4 has pred None
    assert m["judgment_consistency"] == 0.75
    assert m["judgment_missing"] == 1
    assert m["mean_entropy"] == 1.5  # (1 + 2 + 3 + 0) / 4


def test_slices(tiny_metrics):
    s = tiny_metrics["slices"]
    assert list(s) == ["head", "tail"]  # "nobody" has no record
    assert s["head"]["n"] == 4 and s["head"]["n_queries"] == 2
    assert s["head"]["accuracy"]["value"] == 0.5
    tail = s["tail"]
    assert tail["accuracy"]["value"] == 1.0 and tail["accuracy"]["ci95"] == [1.0, 1.0]
    assert tail["macro_f1"]["value"] == 0.5  # Complement 1, Irrelevant 1, Exact 0, Substitute 0
    assert tail["good_f1"]["value"] == 0.0  # no good gold or prediction: zero_division=0
    assert tail["first_wrong_step"][QU] == 1


def test_json_serialisable(tiny_metrics):
    assert json.loads(json.dumps(tiny_metrics)) == tiny_metrics


def test_ci_contains_point_and_is_deterministic(tiny_metrics):
    for name in ("accuracy", "macro_f1", "good_f1"):
        v = tiny_metrics["overall"][name]
        assert v["ci95"][0] <= v["value"] <= v["ci95"][1]
    again = compute_metrics(tiny(), LABELS, GOOD, ["head", "tail", "nobody"], n_boot=200, seed=1)
    assert again == tiny_metrics
    other = compute_metrics(tiny(), LABELS, GOOD, [], n_boot=200, seed=2)["overall"]
    assert other["accuracy"]["value"] == tiny_metrics["overall"]["accuracy"]["value"]


def test_ci_degenerate_when_queries_identical():
    recs = []
    for q in range(5):
        recs += [rec(f"{q}a", f"q{q}", "Exact", "Exact"), rec(f"{q}b", f"q{q}", "Exact", "Substitute"),
                 rec(f"{q}c", f"q{q}", "Irrelevant", None)]
    m = compute_metrics(recs, LABELS, GOOD, [], n_boot=300)["overall"]
    for name in ("accuracy", "macro_f1", "good_f1"):
        lo, hi = m[name]["ci95"]
        assert lo == hi == m[name]["value"]
    assert m["accuracy"]["value"] == round(1 / 3, 4)


def test_bootstrap_resamples_queries_not_records():
    # one query all right, one all wrong, with very different sizes: the query-level
    # resample can only give accuracies 0, 1 or the pooled value
    recs = [rec(i, "big", "Exact", "Exact") for i in range(9)] + [rec(99, "small", "Exact", "Irrelevant")]
    m = compute_metrics(recs, LABELS, GOOD, [], n_boot=500)["overall"]
    assert m["accuracy"]["value"] == 0.9
    assert m["accuracy"]["ci95"] == [0.0, 1.0]


def test_numpy_confusion_scores_match_sklearn():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c", "d", "e"]  # "e" never occurs
    for trial in range(20):
        n = int(rng.integers(5, 60))
        gold = list(rng.choice(labels[:4], size=n))
        pred = [None if u < 0.1 else str(x)
                for u, x in zip(rng.random(n), rng.choice(labels[:4] + ["zzz"], size=n))]
        recs = [rec(i, f"q{i % 7}", g, p) for i, (g, p) in enumerate(zip(gold, pred))]
        enc = _Encoded(recs, labels, ["a", "b"])
        idx = np.arange(n)
        fast = _cm_scores(enc.query_confusions(idx).sum(axis=0, keepdims=True), enc.K, enc.good)
        ref = _point_scores(enc.gold, enc.pred, enc.K, enc.good)
        for name in ("accuracy", "macro_f1", "good_f1"):
            assert fast[name][0] == pytest.approx(ref[name], abs=1e-12), (trial, name)
        np.testing.assert_allclose(fast["per_class_f1"][0], ref["per_class_f1"], atol=1e-12)
        sk_pred = ["<none>" if p is None else p for p in pred]
        assert ref["macro_f1"] == pytest.approx(
            f1_score(gold, sk_pred, labels=labels, average="macro", zero_division=0))


def test_bad_input_errors():
    with pytest.raises(DataError, match="gold"):
        compute_metrics([rec(1, "q", "Nope", "Exact")], LABELS, GOOD, [])
    bad = rec(1, "q", "Exact", "Exact")
    del bad["format_valid"]
    with pytest.raises(DataError, match="format_valid"):
        compute_metrics([bad], LABELS, GOOD, [])
    with pytest.raises(ValueError, match="good_labels"):
        compute_metrics(tiny(), LABELS, ["Great"], [])
    with pytest.raises(ValueError, match="no records"):
        compute_metrics([], LABELS, GOOD, [])


