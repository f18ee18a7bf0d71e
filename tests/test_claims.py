"""The claim experiments' machinery: the card knobs, the shuffled negative control, ratio endpoints and verdicts."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from she_bench.ablate import load_suite
from she_bench.data.cards import load_benchmark
from she_bench.data.toyshop import checks, judge, relation, Query, Item
from she_bench.report.claims import equivalent, verdict, VERDICTS
from she_bench.report.stats import contrast, ratio

CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")
EXPERIMENTS = sorted((Path(__file__).parents[1] / "benchmarks" / "experiments").glob("*.yaml"))


def _noisy(**over):
    return load_benchmark(CARD, overrides={"rationale_share": 1.0, **over}).splits["train"]


def test_teacher_noise_corrupts_the_declared_share_consistently_and_reproducibly():
    train = _noisy(teacher_noise=0.5)
    noisy = [ex for ex in train if ex.teacher]
    assert len(noisy) == round(0.5 * len(train))
    assert [ex.id for ex in noisy] == [ex.id for ex in _noisy(teacher_noise=0.5) if ex.teacher]  # the card's seed
    assert {ex.id for ex in _noisy(teacher_noise=0.25) if ex.teacher} <= {ex.id for ex in noisy}  # nested
    for ex in noisy:
        assert ex.noise in ("wrong category relation", "misread brand", "misread color", "misread material")
        assert "relevance_judgment" not in ex.teacher and all(ex.teacher[s] != ex.steps[s] for s in ex.teacher)
        # the teacher's chain is consistent: its item, read back, gives the human label by the rules
        f = ex.facts
        item = dict(p.split("=", 1) for p in ex.teacher.get("item_understanding", ex.steps["item_understanding"]).split("; "))
        q = Query(ex.query_type, f["query_category"], f.get("query_brand", ""), f.get("query_color", ""),
                  f.get("query_material", ""), f.get("query_exclude", ""))
        it = Item(item["category"], item["brand"], item["color"], item["material"])
        assert judge(q.intent, relation(q.category, it.category), [(k, v) for k, _, _, v in checks(q, it)]) == ex.label
    kinds = Counter(ex.noise for ex in noisy)
    assert len(kinds) >= 2, kinds


def test_annotation_share_marks_a_nested_seeded_share_of_train():
    train = load_benchmark(CARD, overrides={"annotation_share": 0.5}).splits["train"]
    known = {ex.id for ex in train if ex.annotated}
    assert len(known) == round(0.5 * len(train))
    assert {ex.id for ex in load_benchmark(CARD, overrides={"annotation_share": 0.2}).splits["train"] if ex.annotated} <= known


@pytest.mark.parametrize("key", ["teacher_noise", "annotation_share"])
def test_a_knob_out_of_range_is_refused(key):
    with pytest.raises(ValueError, match=key):
        load_benchmark(CARD, overrides={key: 1.5})


def test_shuffled_step_rewards_are_a_within_group_permutation():
    from types import SimpleNamespace

    from she_bench.methods.srpo import SRPOTrainer

    g, groups = 4, 3
    rewards = torch.arange(g * groups * 5, dtype=torch.float32).view(g * groups, 5)
    fake = SimpleNamespace(num_generations=g, ctx=SimpleNamespace(cfg=SimpleNamespace(seed=7)),
                           state=SimpleNamespace(global_step=3))
    out = SRPOTrainer.shuffled(fake, rewards)
    assert not torch.equal(out, rewards)
    for i in range(groups):
        rows = lambda t: sorted(map(tuple, t[i * g:(i + 1) * g].tolist()))  # noqa: E731
        assert rows(out) == rows(rewards)  # the same rows, within the same group
    assert torch.equal(out, SRPOTrainer.shuffled(fake, rewards))  # seeded


def test_ratio_endpoint_interval_covers_the_truth():
    # 3 seeds x 150 queries; per query (num, den) with a seed effect: the 95% interval of A - B covers the true 0.05
    rng = np.random.default_rng(0)
    hits, trials = 0, 120
    for t in range(trials):
        q_rate = rng.beta(4, 6, size=150)
        arms = []
        for shift in (0.05, 0.0):
            runs = []
            for s in range(3):
                den = rng.integers(1, 5, size=150).astype(float)
                p = np.clip(q_rate + shift + rng.normal(0, 0.02), 0, 1)
                runs.append(np.stack([rng.binomial(den.astype(int), p), den], axis=1).astype(float))
            arms.append(runs)
        est = contrast([(1.0, arms[0]), (-1.0, arms[1])], ratio, n_boot=300, seed=t)
        hits += est["lo"] <= 0.05 <= est["hi"]
    assert hits / trials >= 0.9, hits / trials


def test_the_four_verdicts():
    assert verdict(-0.05, 0.01, "lower", True) == "supported"
    assert verdict(0.05, 0.01, "lower", True) == "contradicted"
    assert verdict(-0.05, 0.2, "lower", True) == "inconclusive at this power"
    assert verdict(-0.05, 0.001, "lower", False) == "unable to see"  # a failed positive control trumps the test
    assert set(VERDICTS) == {"supported", "contradicted", "inconclusive at this power", "unable to see"}
    assert equivalent({"lo": -0.01, "hi": 0.02}, 0.03) is True
    assert equivalent({"lo": -0.05, "hi": 0.02}, 0.03) is False  # not significant is not equivalent


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_declares_its_analysis_and_expands(path):
    import yaml

    exp = yaml.safe_load(path.read_text())
    jobs = load_suite(path)
    assert jobs and exp.get("claim") and exp.get("analysis")
    a = exp["analysis"]
    if "aa" in a:
        assert len(exp["seeds"]) == 6
        return
    assert a["direction"] in ("higher", "lower") and a["primary"]["level"] in exp["knob"]["levels"]
    assert a.get("positive_control") and a.get("negative_control")
    names = {j.run.cfg.name for j in jobs}
    for c in ("positive_control", "negative_control"):
        assert a[c]["variant"] in {j.recipe for j in jobs}
    assert len(names) == len(exp["recipes"]) * len(exp["knob"]["levels"])
