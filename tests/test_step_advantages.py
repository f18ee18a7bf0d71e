import math

import pytest
import torch

from she_bench.rewards.grm import hybrid_step_rewards
from she_bench.rewards.step_advantages import (
    group_normalize,
    step_advantages,
    token_step_index,
)

nan = float("nan")
S = 1 / math.sqrt(3)  # 0.57735: deviations of 2/3 and 1/3 over a sample std of sqrt(1/3)


def test_step_advantages_by_hand():
    # one group of 4 rollouts, 3 steps; rollout 0 is right, the others wrong; rollout 2 did not parse
    outcome_adv = torch.tensor([1.5, -0.5, -0.5, -0.5])
    step_rewards = torch.tensor([[1, 1, 1], [1, 0, 0], [nan, nan, nan], [1, 0, 1]], dtype=torch.float)
    correct = torch.tensor([True, False, False, False])
    token_steps = torch.tensor([[0, 0, 1, 2, -1]] * 2 + [[-1] * 5] + [[0, 0, 1, 2, -1]])
    adv = step_advantages(outcome_adv, step_rewards, correct, token_steps, group_size=4, step_weight=0.5,
                          critical_weight=2.0, clip=2.0)
    # step 0: every scored rollout right -> no signal. step 1: [1,0,-,0] -> a = [2S, -S, -, -S];
    # step 2: [1,0,-,1] -> a = [S, -2S, -, S]. Critical (w=2): the first wrong step (1) of rollouts 1 and 3,
    # and rollout 0's step 1, right where 2 of 3 erred.
    expected = torch.tensor([
        [1.5, 1.5, 1.5 + 0.5 * 2 * 2 * S, 1.5 + 0.5 * S, 1.5],  # 2.65: outcome and step parts bounded apart
        [-0.5, -0.5, -0.5 - 0.5 * 2 * S, -0.5 - 0.5 * 2 * S, -0.5],
        [-0.5] * 5,  # unparsable: only the outcome advantage, on every token
        [-0.5, -0.5, -0.5 - 0.5 * 2 * S, -0.5 + 0.5 * S, -0.5],
    ])
    assert torch.allclose(adv, expected, atol=1e-3), adv
    clamped = step_advantages(torch.tensor([3.0, -0.5, -0.5, -0.5]), step_rewards, correct, token_steps, group_size=4,
                              step_weight=2.0, critical_weight=2.0, clip=2.0)
    assert clamped[0, 0] == 2.0 and clamped[0, 2] == 4.0  # outcome clamped to 2, step part (4.6) clamped to 2


def test_critical_step_changes_the_lone_right_rollout_at_one_of_eight():
    # 1 right of 8: GRPO's outcome advantage for it is (1 - 1/8) / std = 2.47, above the clip of 2
    rewards = torch.tensor([1.0] + [0.0] * 7)
    outcome_adv = (rewards - rewards.mean()) / rewards.std()
    assert outcome_adv[0] > 2.0
    # step 1 (attribute matching, say) right only in the right rollout: a critical correct step
    step_rewards = torch.tensor([[1.0, 1.0]] + [[1.0, 0.0]] * 7)
    correct = rewards.bool()
    token_steps = torch.tensor([[0, 1, -1]] * 8)
    kw = dict(group_size=8, step_weight=0.5, clip=2.0)
    with_crit = step_advantages(outcome_adv, step_rewards, correct, token_steps, critical_weight=2.0, **kw)
    without = step_advantages(outcome_adv, step_rewards, correct, token_steps, critical_weight=1.0, **kw)
    assert with_crit[0, 1] > without[0, 1] > 2.0  # the critical weight reaches the right rollout's step tokens
    assert with_crit[0, 2] == without[0, 2] == 2.0  # its label tokens keep the clamped outcome advantage


def test_step_normalisation_needs_a_minimum_spread():
    scores = torch.tensor([[0.50], [0.51], [0.49], [0.50]])  # near-identical GRM scores
    assert group_normalize(scores, group_size=4).abs().max() > 0.5  # without a floor: unit-size noise
    assert group_normalize(scores, group_size=4, min_std=0.1).abs().max() == 0
    verdicts = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    assert group_normalize(verdicts, group_size=4, min_std=0.1)[0, 0] > 1.0  # a real difference survives


def test_zero_step_weight_gives_outcome_advantage_everywhere():
    outcome_adv = torch.tensor([1.0, -1.0, 3.0, -3.0])
    step_rewards = torch.rand(4, 5)
    adv = step_advantages(outcome_adv, step_rewards, torch.tensor([True, False, True, False]),
                          torch.randint(-1, 5, (4, 7)), group_size=2, step_weight=0.0, critical_weight=2.0)
    assert torch.equal(adv, outcome_adv.unsqueeze(1).expand(4, 7))


def test_scalar_ablation_adds_one_sequence_term():
    outcome_adv = torch.zeros(2)
    step_rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # mean step scores 1.0 and 0.5
    adv = step_advantages(outcome_adv, step_rewards, torch.tensor([True, False]), torch.tensor([[0, 1, -1]] * 2),
                          group_size=2, step_weight=1.0, scalar=True)
    d = 0.25 / (math.sqrt(0.125) + 1e-4)  # (x - mean) / sample std of [1.0, 0.5]
    assert torch.allclose(adv, torch.tensor([[d] * 3, [-d] * 3]), atol=1e-4)


def test_group_normalize_ignores_nan_and_single_scores():
    x = torch.tensor([[1.0, nan], [0.0, 1.0], [nan, nan], [nan, 0.0]])
    out = group_normalize(x, group_size=2)
    assert out[0, 0] > 0 and out[1, 0] < 0
    assert out[0, 1] == 0 and out[2].abs().sum() == 0  # one scored rollout in a group: no signal


def test_hybrid_mixing_modes():
    ver = [{"item_understanding": True, "relevance_judgment": False, "category_matching": None}]
    grm = [{"item_understanding": 0.2, "relevance_judgment": 0.8, "category_matching": 0.6}]
    first = hybrid_step_rewards(ver, grm, "verifier_first")[0]
    assert (first["item_understanding"], first["relevance_judgment"], first["category_matching"]) == (1.0, 0.0, 0.6)
    w = hybrid_step_rewards(ver, grm, "weighted", 0.75)[0]
    assert w["item_understanding"] == pytest.approx(0.8) and w["category_matching"] == pytest.approx(0.6)
    assert hybrid_step_rewards(ver, grm, "verifier_only")[0]["category_matching"] is None
    assert hybrid_step_rewards(ver, grm, "grm_only")[0]["item_understanding"] == 0.2
    with pytest.raises(ValueError):
        hybrid_step_rewards(ver, grm, "nonsense")


class CharTokenizer:
    """Each id is one character (ids 0..): enough to check the span -> token mapping."""

    def batch_decode(self, seqs, skip_special_tokens=True):
        return ["".join(chr(i) for i in s) for s in seqs]


def test_token_step_index_maps_step_lines_to_tokens():
    text = "1. A: x\n2. B: y\nLabel: Exact"
    spans = {"s0": (0, 7), "s1": (8, 15)}
    ids = [ord(c) for c in text]
    idx = token_step_index(CharTokenizer(), [ids], [spans], ("s0", "s1"), width=len(ids) + 3)
    got = idx[0].tolist()
    assert got[:7] == [0] * 7 and got[7] == -1  # the newline belongs to no step
    assert got[8:15] == [1] * 7 and all(v == -1 for v in got[15:])


class PieceTokenizer:
    """Tokenises by a fixed table of pieces (longest first), like a BPE without the merges."""

    def __init__(self, pieces):
        self.pieces = sorted(pieces, key=len, reverse=True)

    def __call__(self, text, add_special_tokens=False):
        ids = []
        while text:
            piece = next(p for p in self.pieces if text.startswith(p))
            ids.append(self.pieces.index(piece))
            text = text[len(piece):]
        return {"input_ids": ids}

    def convert_ids_to_tokens(self, ids):
        return [self.pieces[i] for i in ids]


def test_grm_answers_must_be_distinct_single_tokens():
    from she_bench.config import ConfigError
    from she_bench.rewards.grm import answer_token_ids

    split = PieceTokenizer([" ", "+", "-", "y", "e", "s", "n", "o"])  # " +" -> [" ", "+"]: shared first token
    with pytest.raises(ConfigError, match="distinct single tokens"):
        answer_token_ids(split, (" +", " -"))
    whole = PieceTokenizer([" +", " -", " ", "+"])
    assert answer_token_ids(whole, (" +", " -")) == (0, 1)
    with pytest.raises(ConfigError, match="reward.grm_answers"):
        answer_token_ids(whole, (" +", " +"))


def test_toy_tokenizer_has_single_token_grm_answers():
    from she_bench.models import train_toy_tokenizer
    from she_bench.rewards.grm import GENERATIVE_ANSWERS, answer_token_ids

    tok = train_toy_tokenizer(["1. Query understanding: category=boots; brand=zento\nLabel: Exact"] * 20, 300)
    right, wrong = answer_token_ids(tok, GENERATIVE_ANSWERS)
    assert right != wrong
