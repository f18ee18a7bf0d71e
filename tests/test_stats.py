"""The report's statistics: the crossed seed x query estimator's coverage, Holm, the power figure."""
from pathlib import Path

import numpy as np
import pytest

from she_bench.report.stats import crossed, holm, mdd, seeds_to_detect

K = 2
GOOD = np.array([True, False])


def simulate(rng, delta, seeds=3, queries=150, per_query=6, seed_sd=0.02, query_sd=0.06, base=0.65):
    """Per-query confusion counts of variants A and B for each seed; accuracy differs by `delta` in
    expectation over seeds and queries. Correct: gold 0 predicted 0; wrong: gold 0 predicted 1."""
    q_a, q_b = rng.normal(0, query_sd, queries), rng.normal(0, query_sd, queries)
    cms = {"a": [], "b": []}
    for side, shift, q in (("a", delta, q_a), ("b", 0.0, q_b)):
        for _ in range(seeds):
            p = np.clip(base + shift + rng.normal(0, seed_sd) + q, 0.0, 1.0)
            right = rng.binomial(per_query, p)
            cm = np.zeros((queries, K * (K + 1)))
            cm[:, 0], cm[:, 1] = right, per_query - right
            cms[side].append(cm)
    return cms["a"], cms["b"]


@pytest.mark.parametrize("seed_sd", [0.01, 0.03])
def test_interval_covers_the_truth_at_least_93_percent(seed_sd):
    # seed sd 0.01: the query variance dominates, where a Satterthwaite df would undercover (about 0.91)
    rng = np.random.default_rng(0)
    truth, hits, n = 0.03, 0, 400
    for i in range(n):
        a, b = simulate(rng, truth, seed_sd=seed_sd)
        r = crossed(a, b, "accuracy", K, GOOD, n_boot=1000, seed=i)
        hits += r["lo"] <= truth <= r["hi"]
    assert hits / n >= 0.93


def test_query_only_bootstrap_would_undercover():
    """The check above can fail: an interval from queries alone misses seed variance."""
    rng = np.random.default_rng(1)
    truth, hits, n = 0.03, 0, 200
    for i in range(n):
        a, b = simulate(rng, truth, seed_sd=0.03)
        r = crossed(a, b, "accuracy", K, GOOD, n_boot=1000, seed=i)
        half = 1.96 * np.sqrt(r["boot_var"])  # a bootstrap over queries alone, seeds pooled
        hits += r["diff"] - half <= truth <= r["diff"] + half
    assert hits / n < 0.8


def test_point_estimate_is_the_mean_of_per_seed_differences_and_inside_its_interval():
    a, b = simulate(np.random.default_rng(2), 0.05)
    r = crossed(a, b, "macro_f1", K, GOOD, n_boot=2000)
    assert r["diff"] == pytest.approx(np.mean(r["per_seed"]), abs=1e-6)
    assert r["lo"] <= r["diff"] <= r["hi"]


def test_holm_against_hand_computed_values():
    # sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06, monotone), 0.5 (x1 = 0.5)
    assert holm([0.03, None, 0.01, 0.5, 0.02]) == pytest.approx([0.06, None, 0.04, 0.5, 0.06])
    assert holm([0.4, 0.3]) == pytest.approx([0.6, 0.6])
    assert holm([]) == []


def test_minimum_detectable_difference_has_80_percent_power_in_simulation():
    seeds, queries, seed_sd = 3, 150, 0.02
    # the variance components the estimator sees in this design, measured under no effect
    rng = np.random.default_rng(3)
    comps = [crossed(*simulate(rng, 0.0, seeds, queries, seed_sd=seed_sd), "accuracy", K, GOOD, n_boot=1000, seed=i)
             for i in range(100)]
    seed_var = float(np.mean([c["seed_var"] for c in comps]))
    query_var = float(np.mean([c["query_var"] for c in comps]))
    effect = mdd(seed_var, query_var, seeds, queries)
    rejected = [crossed(*simulate(rng, effect, seeds, queries, seed_sd=seed_sd), "accuracy", K, GOOD, n_boot=1000,
                        seed=i)["p_value"] < 0.05 for i in range(400)]
    assert 0.7 <= np.mean(rejected) <= 0.9
    # more seeds detect less; a target below what the shared query variance allows is unreachable
    assert mdd(seed_var, query_var, 10, queries) < effect
    assert seeds_to_detect(effect, seed_var, query_var, queries) <= seeds
    assert seeds_to_detect(1e-4, seed_var, query_var, queries) is None


def test_the_paired_test_keeps_its_size_in_a_simulated_aa():
    """benchmarks/stats/aa_size.py on synthetic warm starts: two RL rows per seed moved off one warm start by one
    process; the claims' paired test rejects about 5% of the time."""
    import importlib.util

    from she_bench.report.evidence import Evidence

    spec = importlib.util.spec_from_file_location("aa_size", Path(__file__).parents[1] / "benchmarks/stats/aa_size.py")
    aa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(aa)
    rng = np.random.default_rng(1)
    bases = []
    for seed in range(3):
        skill = np.clip(rng.normal(0.8, 0.15, 150), 0, 1)  # per-query difficulty: a shared query part
        preds = [{"id": f"{q}-{i}", "query_id": str(q), "gold": "A", "pred": "A" if rng.random() < skill[q] else "B"}
                 for q in range(150) for i in range(4)]
        bases.append(Evidence(f"ws{seed}", {"seed": seed}, ["A", "B"], [], preds, None, []))
    r = aa.size(bases, [(0.03, 0.6), (0.02, 0.5), (0.04, 0.7)], reps=120, boot=200)
    assert r["reps"] == 120 and r["lo"] <= r["size"] <= r["hi"]
    assert r["size"] <= 0.12, r  # a 5% test: at most 14 of 120 by chance (binomial tail < 0.5%)
