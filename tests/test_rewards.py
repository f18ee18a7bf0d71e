"""Rewards that cannot be gamed: the format gate, class-balanced advantages, and the trainers using them."""
from pathlib import Path

import pytest
import torch

from she_bench.reasoning.parser import parse
from she_bench.reasoning.template import render_rationale
from she_bench.rewards.verifier import shaped_outcome, well_formed

LABELS = ["Exact", "Substitute", "Complement", "Irrelevant"]
CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")
STEPS_OK = {"query_understanding": "intent=plain; category=boots", "item_understanding": "category=boots",
            "category_matching": "same", "attribute_matching": "none", "relevance_judgment": "Exact"}
FULL = render_rationale(STEPS_OK, "Exact")
MISSING = "\n".join(line for line in FULL.splitlines() if not line.startswith("5."))  # judgment dropped, label kept
EMPTY = FULL.replace("3. Category matching: same", "3. Category matching:")
CONTRADICTING = FULL.replace("5. Relevance judgment: Exact", "5. Relevance judgment: Irrelevant")
MALFORMED = {"missing": MISSING, "empty": EMPTY, "contradicting": CONTRADICTING}


def test_well_formed():
    assert well_formed(parse(FULL, LABELS))
    for text in MALFORMED.values():
        p = parse(text, LABELS)
        assert p.label == "Exact" and not well_formed(p)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_format_modes(kind):
    p = parse(MALFORMED[kind], LABELS)
    assert shaped_outcome("Exact", p, LABELS, format_mode="gate") == 0.0
    assert shaped_outcome("Exact", p, LABELS, format_mode="penalty", format_penalty=0.5) == 0.5
    assert shaped_outcome("Exact", p, LABELS, format_mode="off") == 1.0
    assert shaped_outcome("Exact", parse(FULL, LABELS), LABELS, format_mode="gate") == 1.0
    with pytest.raises(ValueError, match="reward.format"):
        shaped_outcome("Exact", p, LABELS, format_mode="strict")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A config, benchmark and warm start for the tiny card, shared by the trainer tests."""
    from tests.test_methods import TINY, make_context

    return make_context(tmp_path_factory.mktemp("rewards"), TINY)


@pytest.mark.parametrize("method", ["grpo", "srpo"])
def test_gate_pays_nothing_for_a_malformed_rationale_in_the_trainers(tiny, method):
    from she_bench.methods.grpo import build_trainer
    from she_bench.methods.srpo import SRPOTrainer, build_grm

    ctx, init = tiny
    ctx.cfg.method = method
    extra = {"trainer_cls": SRPOTrainer, "grm": build_grm(ctx, init)} if method == "srpo" else {}
    trainer = build_trainer(ctx, init, **extra)
    (reward,) = trainer.reward_funcs
    ex = ctx.train_examples[0]
    gold = render_rationale({**STEPS_OK, "relevance_judgment": ex.label}, ex.label)
    texts = [gold, *(t.replace("Exact", ex.label) for t in MALFORMED.values())]
    assert reward(prompts=[""] * 4, completions=texts, example_id=[ex.id] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert trainer.outcome.last_correct == [True, False, False, False]


def test_balanced_class_weights_change_the_advantage_under_group_scaling(tiny, monkeypatch):
    from trl import GRPOTrainer

    from she_bench.methods.grpo import build_trainer, class_weights

    ctx, init = tiny
    assert ctx.cfg.rl.scale_rewards == "group"
    weights = class_weights(ctx.train_examples, "balanced")
    rare = min(weights, key=lambda k: -weights[k])  # the rarest label has the largest weight
    assert weights[rare] > 1.0
    ex = next(e for e in ctx.train_examples if e.label == rare)
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    group_scaled = (rewards - rewards.mean()) / (rewards.std() + 1e-4)  # what TRL hands over: scaling cancels

    def fake_generate(self, inputs):
        self.outcome.last_examples, self.outcome.last_rewards = [ex] * 4, rewards.tolist()
        self.outcome.last_parsed = [parse(FULL, LABELS)] * 4
        return {"advantages": group_scaled.clone(), "completion_mask": torch.ones(4, 3, dtype=torch.long)}

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", fake_generate)
    adv = {}
    for mode in ("none", "balanced"):
        ctx.cfg.reward.class_weights = mode
        adv[mode] = build_trainer(ctx, init)._generate_and_score_completions([])["advantages"]
    ctx.cfg.reward.class_weights = "none"
    expected = group_scaled.clamp(-2, 2).unsqueeze(1)
    assert torch.allclose(adv["none"], expected)
    assert torch.allclose(adv["balanced"], expected * weights[rare])


def test_skipped_groups_leave_the_loss_normaliser(tiny, monkeypatch):
    from trl import GRPOTrainer

    from she_bench.methods.grpo import build_trainer

    ctx, init = tiny
    ex = ctx.train_examples[0]
    rewards = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # group 1 has spread, group 2 has none

    def fake_generate(self, inputs):
        self.outcome.last_examples, self.outcome.last_rewards = [ex] * 8, rewards
        self.outcome.last_parsed = [parse(FULL, LABELS)] * 8
        mask = torch.ones(8, 5, dtype=torch.long)
        return {"advantages": torch.zeros(8), "completion_mask": mask, "num_items_in_batch": mask.sum()}

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", fake_generate)
    ctx.cfg.rl.min_group_std = 0.05
    try:
        out = build_trainer(ctx, init)._generate_and_score_completions([])
    finally:
        ctx.cfg.rl.min_group_std = 0.0
    assert out["completion_mask"][4:].sum() == 0 and out["completion_mask"][:4].sum() == 20
    assert int(out["num_items_in_batch"]) == 20


def test_later_curriculum_stage_keeps_the_warm_start_as_kl_reference(tiny, tmp_path):
    from she_bench.methods.grpo import build_trainer
    from she_bench.models import load_model, load_tokenizer

    ctx, init = tiny
    stage1 = load_model(init)  # stands in for the first stage's final model
    with torch.no_grad():
        for p in stage1.parameters():
            p.add_(0.01)
    stage1.save_pretrained(tmp_path / "stage1", safe_serialization=True)
    load_tokenizer(init).save_pretrained(tmp_path / "stage1")
    trainer = build_trainer(ctx, tmp_path / "stage1")
    warm = load_model(init).state_dict()
    ref = trainer.ref_model.state_dict()
    policy = trainer.model.state_dict()
    name = next(k for k in warm if k.endswith("embed_tokens.weight"))
    assert torch.equal(ref[name], warm[name])  # the reference is the warm start ...
    assert not torch.equal(policy[name], warm[name])  # ... while the policy starts from the stage's model


def test_grm_agreement_against_the_verifier_by_hand():
    from she_bench.data.schema import Example
    from she_bench.evaluation.grm_quality import grm_agreement
    from she_bench.rewards.grm import OracleGRM
    from she_bench.rewards.verifier import score_output

    ex = Example(id="e0", query_id="q0", query="boots", item={"title": "t"}, label="Exact", steps=dict(STEPS_OK))
    wrong_cm = FULL.replace("Category matching: same", "Category matching: unrelated")
    records = [{"id": "e0", "text": t, **score_output(ex, t, LABELS)} for t in (FULL, wrong_cm)]
    perfect = grm_agreement(OracleGRM(LABELS, error_rate=0.0), {"e0": ex}, records, LABELS, "oracle (error 0)")
    assert perfect["overall"] == {"n": 10, "wrong": 1, "flagged": 1, "accuracy": 1.0, "precision_wrong": 1.0,
                                  "recall_wrong": 1.0, "f1_wrong": 1.0, "auroc": None, "auroc_status": "too few"}
    assert perfect["steps"]["category_matching"]["wrong"] == 1
    assert perfect["first_error"]["f1"] == 1.0 and perfect["threshold"] == 0.5

    class Lenient:  # a GRM that never flags a step
        def score(self, examples, parsed):
            return [{s: 1.0 for s in p.steps} for p in parsed]

    lenient = grm_agreement(Lenient(), {"e0": ex}, records, LABELS, "lenient")
    assert lenient["overall"]["accuracy"] == 0.9 and lenient["overall"]["recall_wrong"] == 0.0
    assert lenient["first_error"]["f1"] == 0.0  # it never locates the error
    assert lenient["overall"]["precision_wrong"] is None  # nothing flagged: undefined, not 0
    assert lenient["step_accuracy_grm"]["category_matching"] == 1.0


def test_grm_random_state_travels_with_the_checkpoint(tiny, tmp_path):
    from she_bench.methods.grpo import build_trainer
    from she_bench.methods.srpo import SRPOTrainer, build_grm

    ctx, init = tiny
    trainer = build_trainer(ctx, init, SRPOTrainer, grm=build_grm(ctx, init))
    rng = trainer.grm.rng
    rng.random()
    trainer._save_rng_state(str(tmp_path))
    expected = [rng.random() for _ in range(5)]  # what the GRM would draw after the checkpoint
    rng.seed(12345)  # a fresh process: the GRM starts from its seed again
    trainer._load_rng_state(str(tmp_path))
    assert [rng.random() for _ in range(5)] == expected
