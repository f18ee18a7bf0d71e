"""SRPO's (batch x tokens) advantages from outcome advantages and step rewards.

For rollout i of a group and reasoning step k:
    A_i   outcome advantage, group-normalised exactly as GRPO computes it (given)
    a_ik  step reward r_ik normalised across the group at step k (NaN-aware; 0 where unscored)
    w_ik  critical-step weight: `critical_weight` for the first wrong step of a wrong rollout and
          for a right step where most of the group erred at that step; 1 otherwise
Every token of step k gets A_i + step_weight * w_ik * a_ik; tokens outside the steps (the
label line, end of sequence, stray text) get A_i. The result is clamped to +-clip.
"""
from __future__ import annotations

import torch


def group_normalize(values: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(B, K) -> (B, K): (x - group mean) / (group std + eps) per column, ignoring NaN; NaN -> 0.
    A column with fewer than two scored rollouts in a group carries no signal and gives 0."""
    b, k = values.shape
    g = values.view(b // group_size, group_size, k)
    valid = ~torch.isnan(g)
    count = valid.sum(1, keepdim=True)
    filled = torch.where(valid, g, torch.zeros_like(g))
    mean = filled.sum(1, keepdim=True) / count.clamp(min=1)
    var = (torch.where(valid, g - mean, torch.zeros_like(g)) ** 2).sum(1, keepdim=True) / (count - 1).clamp(min=1)
    out = (g - mean) / (var.sqrt() + eps)
    out = torch.where(valid & (count >= 2), out, torch.zeros_like(out))
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
               critical_weight: float = 1.0, scalar: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The step part of the advantage, over whole groups: (per_step (B, K), per_sequence (B,)).

    Stepwise: per_step = step_weight * w_ik * a_ik. Scalar ablation: the mean step score is one
    sequence-level reward, normalised per group, added to every token (no step credit)."""
    b, k = step_rewards.shape
    if scalar:
        mean_score = torch.nanmean(step_rewards, dim=1, keepdim=True)
        return torch.zeros_like(step_rewards), step_weight * group_normalize(mean_score, group_size)[:, 0]
    a = group_normalize(step_rewards, group_size)
    w = critical_weights(step_rewards, correct, group_size, critical_weight)
    return step_weight * w * a, torch.zeros(b, dtype=step_rewards.dtype, device=step_rewards.device)


def token_advantages(outcome_adv: torch.Tensor, per_step: torch.Tensor, per_sequence: torch.Tensor,
                     token_steps: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """(B, T): A_i + per_sequence_i, plus per_step[i, k] on the tokens of step k; clamped."""
    b, k = per_step.shape
    padded = torch.cat([per_step, torch.zeros(b, 1, dtype=per_step.dtype, device=per_step.device)], 1)
    index = torch.where(token_steps < 0, torch.full_like(token_steps, k), token_steps).to(per_step.device)
    adv = (outcome_adv + per_sequence).unsqueeze(1) + torch.gather(padded, 1, index)
    return adv.clamp(-clip, clip) if clip is not None else adv


def step_advantages(outcome_adv: torch.Tensor, step_rewards: torch.Tensor, correct: torch.Tensor,
                    token_steps: torch.Tensor, group_size: int, step_weight: float,
                    critical_weight: float = 1.0, clip: float | None = None, scalar: bool = False) -> torch.Tensor:
    """outcome_adv (B,), step_rewards (B, K) with NaN where unscored, correct (B,) bool,
    token_steps (B, T) long: the step index of each completion token, -1 outside steps."""
    per_step, per_seq = step_terms(step_rewards, correct, group_size, step_weight, critical_weight, scalar)
    return token_advantages(outcome_adv, per_step, per_seq, token_steps, clip)


def token_step_index(tokenizer, completion_ids: list[list[int]], step_spans: list[dict[str, tuple[int, int]]],
                     steps: tuple[str, ...], width: int) -> torch.Tensor:
    """(B, width) step index of each completion token (-1 outside every step), from the char span
    of each parsed step line. A token belongs to the step whose line holds its first visible char
    (a whitespace-only token: its first char)."""
    out = torch.full((len(completion_ids), width), -1, dtype=torch.long)
    for row, (ids, spans) in enumerate(zip(completion_ids, step_spans)):
        if not spans:
            continue
        prefixes = tokenizer.batch_decode([ids[:j] for j in range(len(ids) + 1)], skip_special_tokens=True)
        text = prefixes[-1]
        for j in range(min(len(ids), width)):
            start, end = len(prefixes[j]), len(prefixes[j + 1])
            piece = text[start:end]
            visible = start + len(piece) - len(piece.lstrip()) if piece.strip() else start
            for k, step in enumerate(steps):
                span = spans.get(step)
                if span and span[0] <= visible < span[1]:
                    out[row, j] = k
                    break
    return out
