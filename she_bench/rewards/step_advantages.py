"""SRPO's (batch x tokens) advantages from outcome advantages and step rewards.

For rollout i of a group and reasoning step k:
    A_i   outcome advantage, group-normalised exactly as GRPO computes it (given)
    a_ik  step reward r_ik normalised across the group at step k (NaN-aware; 0 where unscored)
    w_ik  critical-step weight: `critical_weight` for the first wrong step of a wrong rollout and
          for a right step where most of the group erred at that step; 1 otherwise
Every token of step k gets A_i + step_weight * w_ik * a_ik; tokens outside the steps (the
label line, end of sequence, stray text) get A_i. A_i arrives clamped to +-clip (as GRPO clamps
it) and the step term is bounded by +-clip on its own, so a clamped outcome advantage (1 right
of 8 gives A = 2.47 > 2) never erases the step credit of that rollout.
"""
from __future__ import annotations

import itertools

import torch


def group_normalize(values: torch.Tensor, group_size: int, min_std: float = 0.0, eps: float = 1e-4) -> torch.Tensor:
    """(B, K) -> (B, K): (x - group mean) / (group std + eps) per column, ignoring NaN; NaN -> 0.
    A column with fewer than two scored rollouts in a group, or whose std is below `min_std`, carries
    no signal and gives 0 (near-identical scores are noise, not unit-size advantages)."""
    b, k = values.shape
    g = values.view(b // group_size, group_size, k)
    valid = ~torch.isnan(g)
    count = valid.sum(1, keepdim=True)
    filled = torch.where(valid, g, torch.zeros_like(g))
    mean = filled.sum(1, keepdim=True) / count.clamp(min=1)
    var = (torch.where(valid, g - mean, torch.zeros_like(g)) ** 2).sum(1, keepdim=True) / (count - 1).clamp(min=1)
    std = var.sqrt()
    out = (g - mean) / (std + eps)
    signal = (count >= 2) & (std >= min_std) & (std > 0)
    out = torch.where(valid & signal, out, torch.zeros_like(out))
    return out.view(b, k)


def critical_weights(step_rewards: torch.Tensor, correct: torch.Tensor, group_size: int,
                     critical_weight: float, threshold: float = 0.5) -> torch.Tensor:
    """(B, K) weights: w_crit on the first wrong step of a wrong rollout, and on a right step of a
    right rollout where most scored rollouts of its group were wrong at that step."""
    b, k = step_rewards.shape
    scored = ~torch.isnan(step_rewards)
    wrong = scored & (step_rewards < threshold)
    right = scored & (step_rewards >= threshold)
    weights = torch.ones_like(step_rewards)
    # first wrong step of each wrong rollout
    has_wrong = wrong.any(1)
    first = wrong.float().argmax(1)
    rows = torch.nonzero(~correct & has_wrong).flatten()
    weights[rows, first[rows]] = critical_weight
    # right steps where most of the group erred
    g_wrong = wrong.view(-1, group_size, k).sum(1)
    g_scored = scored.view(-1, group_size, k).sum(1)
    most_erred = (g_wrong * 2 > g_scored).repeat_interleave(group_size, 0)
    weights = torch.where(correct.unsqueeze(1) & right & most_erred, torch.full_like(weights, critical_weight), weights)
    return weights


def step_terms(step_rewards: torch.Tensor, correct: torch.Tensor, group_size: int, step_weight: float,
               critical_weight: float = 1.0, scalar: bool = False, min_std: float = 0.0,
               threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The step part of the advantage, over whole groups: (per_step (B, K), per_sequence (B,)).

    Stepwise: per_step = step_weight * w_ik * a_ik, a step reward below `threshold` (the GRM's) reading as a
    wrong step for the critical weights. Scalar ablation: the mean step score is one sequence-level reward,
    normalised per group, added to every token (no step credit)."""
    b, k = step_rewards.shape
    if scalar:
        mean_score = torch.nanmean(step_rewards, dim=1, keepdim=True)
        return torch.zeros_like(step_rewards), step_weight * group_normalize(mean_score, group_size, min_std)[:, 0]
    a = group_normalize(step_rewards, group_size, min_std)
    w = critical_weights(step_rewards, correct, group_size, critical_weight, threshold)
    return step_weight * w * a, torch.zeros(b, dtype=step_rewards.dtype, device=step_rewards.device)


def token_advantages(outcome_adv: torch.Tensor, per_step: torch.Tensor, per_sequence: torch.Tensor,
                     token_steps: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """(B, T): clamp(A_i) + clamp(per_sequence_i + per_step[i, k]) on the tokens of step k (per_sequence_i
    alone elsewhere): outcome and step parts are each bounded by +-clip."""
    b, k = per_step.shape
    padded = torch.cat([per_step, torch.zeros(b, 1, dtype=per_step.dtype, device=per_step.device)], 1)
    index = torch.where(token_steps < 0, torch.full_like(token_steps, k), token_steps).to(per_step.device)
    step_part = per_sequence.unsqueeze(1) + torch.gather(padded, 1, index)
    if clip is not None:
        outcome_adv, step_part = outcome_adv.clamp(-clip, clip), step_part.clamp(-clip, clip)
    return outcome_adv.unsqueeze(1) + step_part


def step_advantages(outcome_adv: torch.Tensor, step_rewards: torch.Tensor, correct: torch.Tensor,
                    token_steps: torch.Tensor, group_size: int, step_weight: float,
                    critical_weight: float = 1.0, clip: float | None = None, scalar: bool = False,
                    min_std: float = 0.0) -> torch.Tensor:
    """outcome_adv (B,), step_rewards (B, K) with NaN where unscored, correct (B,) bool,
    token_steps (B, T) long: the step index of each completion token, -1 outside steps."""
    per_step, per_seq = step_terms(step_rewards, correct, group_size, step_weight, critical_weight, scalar, min_std)
    return token_advantages(outcome_adv, per_step, per_seq, token_steps, clip)


def _token_char_bounds(tokenizer, seqs: list[list[int]]) -> tuple[list[list[int]], list[str]]:
    """For each id sequence: its decoded text and the char offsets [len(decode(ids[:j])) for j in
    0..len(ids)]. Fast path: each distinct id is decoded once and the offsets are the running sum of
    the pieces' lengths, used when the pieces join up to the decoded text (byte-level BPE on whole
    characters). Otherwise (a multi-byte char split across tokens, SentencePiece spaces, WordPiece
    '##') every prefix is decoded, as before."""
    vocab = sorted({t for ids in seqs for t in ids})
    piece = dict(zip(vocab, tokenizer.batch_decode([[t] for t in vocab], skip_special_tokens=True))) if vocab else {}
    texts = list(tokenizer.batch_decode(seqs, skip_special_tokens=True))
    bounds = []
    for i, ids in enumerate(seqs):
        pieces = [piece[t] for t in ids]
        if "".join(pieces) == texts[i]:
            bounds.append(list(itertools.accumulate(map(len, pieces), initial=0)))
        else:
            prefixes = tokenizer.batch_decode([ids[:j] for j in range(len(ids) + 1)], skip_special_tokens=True)
            bounds.append([len(p) for p in prefixes])
            texts[i] = prefixes[-1]
    return bounds, texts


def token_step_index(tokenizer, completion_ids: list[list[int]], step_spans: list[dict[str, tuple[int, int]]],
                     steps: tuple[str, ...], width: int) -> torch.Tensor:
    """(B, width) step index of each completion token (-1 outside every step), from the char span
    of each parsed step line. A token belongs to the step whose line holds its first visible char
    (a whitespace-only token: its first char); where spans overlap, the earliest step in `steps`."""
    out = torch.full((len(completion_ids), width), -1, dtype=torch.long)
    rows = [r for r, spans in zip(range(len(completion_ids)), step_spans) if spans]
    if not rows or width <= 0 or not steps:
        return out
    bounds, texts = _token_char_bounds(tokenizer, [list(completion_ids[r]) for r in rows])
    visible = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, (b, text) in enumerate(zip(bounds, texts)):
        vis = []
        for j in range(min(len(b) - 1, width)):
            start = b[j]
            piece = text[start:b[j + 1]]
            rest = piece.lstrip()
            vis.append(start + len(piece) - len(rest) if rest else start)
        visible[i, :len(vis)] = torch.tensor(vis, dtype=torch.long)
    spans = [[step_spans[r].get(step) or (0, 0) for step in steps] for r in rows]  # (0, 0): empty, holds nothing
    lo, hi = torch.tensor(spans, dtype=torch.long).unbind(2)  # (R, K) each
    v = visible.unsqueeze(2)
    inside = (v >= lo.unsqueeze(1)) & (v < hi.unsqueeze(1)) & (v >= 0)  # (R, width, K)
    first = inside.to(torch.uint8).argmax(2)  # the first step whose span holds the char
    out[rows] = torch.where(inside.any(2), first, torch.full_like(first, -1))
    return out
