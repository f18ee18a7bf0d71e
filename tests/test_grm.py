"""The generative GRM: balanced training data with realistic synthetic negatives, a threshold chosen on
held-out rollouts, and the step-judge measures (AUROC, F1 of 'wrong', ProcessBench's first-error F1)."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from she_bench.data.cards import load_benchmark
from she_bench.rewards.judge_quality import MIN_WRONG, best_threshold, first_error_f1, step_rates
from she_bench.methods import train_grm
from she_bench.methods.train_grm import realistic_edit, vocabulary
from she_bench.rewards.verifier import step_matches

CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")


def test_first_error_f1_worked_by_hand():
    w, r = (True, 0.1), (False, 0.9)  # (truly wrong, GRM score for right): flagged, not flagged
    wrong_unflagged, right_flagged = (True, 0.9), (False, 0.1)
    chains = [
        [r, w, r],                    # first error at 1, the GRM's first flag at 1: located
        [wrong_unflagged, r, (False, 0.2)],  # first error at 0, first flag at 2: missed
        [r, r, r],                    # all right, nothing flagged: called right
        [right_flagged, r, r],        # all right, but flagged: called wrong
    ]
    out = first_error_f1(chains, threshold=0.5)
    assert (out["erroneous"], out["correct"]) == (2, 2)
    assert out["accuracy_erroneous"] == 0.5 and out["accuracy_correct"] == 0.5 and out["f1"] == 0.5
    always_right = [[(t, 1.0) for t, _ in c] for c in chains]
    assert first_error_f1(always_right, 0.5)["f1"] == 0.0  # ProcessBench: such a judge scores 0


def test_auroc_needs_enough_wrong_examples():
    few = [(True, 0.2)] * (MIN_WRONG - 1) + [(False, 0.8)] * 50
    assert step_rates(few, 0.5)["auroc"] is None and step_rates(few, 0.5)["auroc_status"] == "too few"
    enough = [(True, 0.2)] * MIN_WRONG + [(False, 0.8)] * 50
    rates = step_rates(enough, 0.5)
    assert rates["auroc"] == 1.0 and rates["f1_wrong"] == 1.0 and rates["recall_wrong"] == 1.0
    assert step_rates([], 0.5)["auroc_status"] == "unmeasured"


def test_threshold_maximises_f1_of_wrong():
    pairs = [(True, 0.7), (True, 0.75), (False, 0.9), (False, 0.95), (True, 0.1)]
    t = best_threshold(pairs)
    assert 0.75 < t < 0.9  # every wrong step below it, every right one above
    assert step_rates(pairs, t)["f1_wrong"] == 1.0
    assert best_threshold([(False, 0.3), (False, 0.9)]) == 0.5  # nothing wrong to choose by


@pytest.fixture(scope="module")
def bench():
    return load_benchmark(CARD, None, {"options": {"n_train": 300}})


def test_realistic_edits_are_wrong_and_look_like_the_step(bench):
    labels, rng = bench.labels, random.Random(0)
    vocab = vocabulary(bench.splits["train"], labels)
    seen = set()
    for ex in bench.splits["train"][:120]:
        for step, gold in ex.steps.items():
            edited = realistic_edit(ex, step, gold, vocab, labels, rng)
            if edited is None:
                continue
            seen.add(step)
            assert not step_matches(gold, edited), (step, gold, edited)
            if step in ("category_matching", "attribute_matching"):  # the same values compared, another verdict
                assert edited.rsplit(":", 1)[0] == gold.rsplit(":", 1)[0]
            if step in ("query_understanding", "item_understanding"):  # one value misread, the keys kept
                g, e = (dict(p.split("=") for p in t.split("; ")) for t in (gold, edited))
                assert g.keys() == e.keys() and sum(g[k] != e[k] for k in g) == 1
    assert seen == set(bench.card.annotated_steps)


def test_grm_data_is_balanced_per_step_with_counted_synthetic_negatives(bench, tmp_path, monkeypatch):
    from she_bench.config import make_config
    from she_bench.methods.common import Context
    from she_bench.reasoning.template import gold_rationale
    from she_bench.rewards.verifier import score_output
    from she_bench.runs import Run

    cfg = make_config("srpo", {"benchmark": CARD, "output_dir": str(tmp_path), "reward": {"grm_prompts": 100}})
    run = Run(cfg, bench.name)
    run.path.mkdir(parents=True)
    ctx = Context(cfg=cfg, bench=bench, run=run, base_model=tmp_path)

    def policy(ctx, model, examples, k, desc=""):  # a policy that is always right, but for a wrong relation now and then
        out = []
        for i, ex in enumerate(examples):
            text = gold_rationale(ex)
            if i % 5 == 0:
                text = text.replace(ex.steps["category_matching"], ex.steps["category_matching"].rsplit(":", 1)[0] + ": unrelated"
                                    if not ex.steps["category_matching"].endswith("unrelated") else
                                    ex.steps["category_matching"].rsplit(":", 1)[0] + ": same")
            out.append([{"text": text, **score_output(ex, text, bench.labels)}] * k)
        return out

    monkeypatch.setattr(train_grm, "sample_rollouts", policy)
    rows, heldout, record = train_grm.grm_data(ctx, tmp_path)
    assert record["heldout_prompts"] == 20 and len(heldout) == 20 * cfg.reward.grm_rollouts
    for step, c in record["trained_on"].items():
        assert c["right"] == c["wrong"] + c["synthetic"] > 0, (step, c)  # balanced
    cm = record["trained_on"]["category_matching"]
    assert cm["wrong"] > 0 and cm["synthetic"] > 0  # the real wrong relations, topped up with synthetic ones
    assert record["trained_on"]["item_understanding"]["wrong"] == 0  # never wrong here: all synthetic
    answers = [r["completion"] for r in rows]
    assert answers.count(" +") == answers.count(" -")
    # a filtered or curriculum stage's few prompts do not shrink the GRM's data: it draws from all of train
    stage = dataclasses.replace(ctx, examples=bench.splits["train"][:10], stage="1:head")
    assert train_grm.grm_data(stage, tmp_path)[2]["heldout_prompts"] == 20


@pytest.mark.slow
def test_a_balanced_grm_flags_wrong_steps_where_an_always_right_judge_scores_zero(tmp_path, monkeypatch):
    from she_bench.cli import main

    monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path / "cache"))
    args = ["run", "--method", "srpo", "--benchmark", CARD, "--output-dir", str(tmp_path), "card.options.n_train=200",
            "warm_start.epochs=2", "warm_start.batch_size=16", "train.max_steps=1", "train.prompts_per_step=2",
            "rl.group_size=2", "rl.max_completion_length=64", "eval.max_new_tokens=64", "eval.bootstrap=20",
            "reward.grm=generative", "reward.grm_prompts=150", "reward.grm_rollouts=2", "reward.grm_epochs=3",
            "reward.grm_min_auroc=0"]
    assert main(args) == 0
    (path,) = (tmp_path / "toyshop-tiny").glob("srpo-*")
    grm = json.loads((path / "metrics.json").read_text())["grm_agreement"]
    held = grm["heldout"]
    trained = held["trained_on"]
    assert all(c["right"] == c["wrong"] + c["synthetic"] for c in trained.values())
    quality = held["heldout"]
    assert quality["overall"]["recall_wrong"] > 0 and quality["overall"]["flagged"] > 0  # it flags wrong steps
    assert quality["first_error"]["erroneous"] > 0 and quality["first_error"]["accuracy_erroneous"] > 0
    # a judge that calls every step right locates no first error on the same chains: first-error F1 0
    assert 0.0 <= held["threshold"] <= 1.0 + 1e-6
