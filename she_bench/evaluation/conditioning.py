"""Does the policy's verdict depend on the input? A teacher-forced AUC per verdict.

For each evaluated pair and each verdict step with a gold verdict (reasoning/verdicts.py), the model
reads the gold prefix: the prompt, the gold steps before it, and the gold step up to its verdict
('3. Category matching: boots vs sandals:'). Each candidate verdict is scored by its sequence
log-probability after that prefix, the line's end included (so 'same' is not scored as the start of
'same group'): the prefix is read once and every candidate continues from its cache; the candidates' probabilities
(softmax over their log-probabilities) are compared with the gold by AUC, one-vs-rest per verdict value
and macro-averaged where a step has more than two candidates.

The AUC is taken within each candidate group, pairs of one query type comparing one key (attribute
matching's brand, color, ...), and averaged over groups weighted by their pairs: pooled across groups, a
model that only knows each group's base rate would already look informed (or, with the groups' priors
against their base rates, worse than chance).

A policy that ignores the input gives the same probabilities whatever the pair and scores about 0.5;
one that always puts its mass on the gold verdict scores 1.0. The candidates of a pair are the verdicts
the train split's gold gives for the same step, compared key (attribute matching: brand, color, ...)
and query type, so no pair is asked to choose a verdict its kind of query never has. A pair whose
gold verdict is not among them is left out and counted.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from she_bench.data.schema import STEP_TITLES, STEPS
from she_bench.reasoning.template import gold_rationale, render_prompt, step_line
from she_bench.reasoning.verdicts import VERDICT_STEPS, split_verdict


def candidate_sets(train, labels: list[str]) -> dict[tuple, list[str]]:
    """(step, key, query type) -> the verdict values the train gold gives, sorted."""
    sets: dict[tuple, set] = defaultdict(set)
    for ex in train:
        for step in VERDICT_STEPS:
            cut = split_verdict(step, ex.steps.get(step), labels)
            if cut is not None:
                sets[(step, cut.key, ex.query_type)].add(cut.value)
    return {k: sorted(v) for k, v in sets.items()}


def verdict_prefix(ex, step: str, prompt: str, labels: list[str]) -> tuple[str, str] | None:
    """(the gold prefix up to the verdict, the gold verdict), None where the gold step has no verdict."""
    cut = split_verdict(step, ex.steps.get(step), labels)
    if cut is None:
        return None
    lines = gold_rationale(ex, withheld_ok=True, clean=True).split("\n")
    k = STEPS.index(step)
    head = step_line(k + 1, step, "").rstrip() if not cut.prefix else f"{k + 1}. {STEP_TITLES[step]}: {cut.prefix}"
    return prompt + "\n".join(lines[:k] + [head]), cut.value


def _split_tokens(tokenizer, prefix: str, continuation: str) -> tuple[list[int], list[int]]:
    """The jointly tokenized text cut where the continuation starts (by character offsets, so a merge across
    the boundary is scored as the model reads it): (prefix ids, continuation ids)."""
    enc = tokenizer(prefix + continuation, add_special_tokens=False, return_offsets_mapping=True)
    ids, ends = enc["input_ids"], [e for _, e in enc["offset_mapping"]]
    cut = next((i for i, e in enumerate(ends) if e > len(prefix)), len(ids))
    return ids[:cut], ids[cut:]


@torch.no_grad()
def candidate_logprobs(model, tokenizer, prefixes: list[str], candidates: list[list[str]], batch_size: int = 64,
                       device: str = "cpu") -> list[list[float]]:
    """log P(candidate | prefix) for each prefix and each of its candidates. The prefix is read once and its
    cache extended by every candidate (one pass for the prefix, one for all its candidates together):
    the same log-probabilities as a full pass per candidate."""
    pad = tokenizer.pad_token_id
    out: list[list[float]] = []
    for start in range(0, len(prefixes), batch_size):
        split = [[_split_tokens(tokenizer, p, c) for c in cands]
                 for p, cands in zip(prefixes[start:start + batch_size], candidates[start:start + batch_size])]
        heads = [s[0][0] for s in split]
        if any(h != head for s, h in zip(split, heads) for head, _ in s):  # a candidate changed the prefix's tokens
            raise ValueError("a candidate verdict merged with its prefix's last token; no shared prefix to read once")
        width = max(len(h) for h in heads)
        ids = torch.tensor([[pad] * (width - len(h)) + h for h in heads])
        mask = torch.tensor([[0] * (width - len(h)) + [1] * len(h) for h in heads])
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        first = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                      use_cache=True, logits_to_keep=1)
        name = "cache" if "cache" in first else "past_key_values"  # transformers >= 5.24 calls it cache
        cache, first_logp = first[name], torch.log_softmax(first.logits[:, -1].float(), -1)
        rows = [i for i, s in enumerate(split) for _ in s]
        tails = [t for s in split for _, t in s]
        cache.batch_select_indices(torch.tensor(rows, device=device))
        length = max(len(t) for t in tails)
        tail_ids = torch.tensor([t + [pad] * (length - len(t)) for t in tails])
        tail_mask = torch.tensor([[1] * len(t) + [0] * (length - len(t)) for t in tails])
        full_mask = torch.cat([mask[rows], tail_mask], 1)
        tail_pos = mask[rows].sum(1, keepdim=True) + torch.arange(length).unsqueeze(0)
        logits = model(input_ids=tail_ids.to(device), attention_mask=full_mask.to(device),
                       position_ids=tail_pos.to(device), use_cache=False, **{name: cache}).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1) if length > 1 else None
        scores = first_logp[rows].gather(1, tail_ids[:, :1].to(device)).squeeze(1)
        if logp is not None:
            rest = logp.gather(-1, tail_ids[:, 1:].unsqueeze(-1).to(device)).squeeze(-1)
            scores = scores + (rest * tail_mask[:, 1:].to(device)).sum(1)
        flat = iter(scores.tolist())
        out += [[next(flat) for _ in s] for s in split]
    return out


def auc_one_vs_rest(gold: list[str], probs: list[dict[str, float]]) -> float | None:
    """Macro AUC over the candidates of one group: for each value v, P(v) against gold == v (values without
    both classes skipped); None if no value can be scored. Two candidates give one AUC (the other is equal)."""
    from sklearn.metrics import roc_auc_score

    aucs = []
    for v in sorted({v for p in probs for v in p}):
        y = [g == v for g in gold]
        if any(y) and not all(y):
            aucs.append(roc_auc_score(y, [p[v] for p in probs]))
    return float(np.mean(aucs)) if aucs else None


def grouped_auc(groups: list[tuple], gold: list[str], probs: list[dict[str, float]]) -> float | None:
    """The AUC within each group (same candidates), averaged over groups weighted by their pairs."""
    members: dict[tuple, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    scored = [(len(idx), a) for idx in members.values()
              if (a := auc_one_vs_rest([gold[i] for i in idx], [probs[i] for i in idx])) is not None]
    return round(sum(n * a for n, a in scored) / sum(n for n, _ in scored), 4) if scored else None


def verdict_auc(model, tokenizer, examples, train, labels: list[str], prompt_cfg=None, slices=None,
                batch_size: int = 64) -> dict:
    """{step: {"auc", "n", "skipped", "slices": {slice: auc}}} on `examples`, teacher-forced with `model`."""
    device = next(model.parameters()).device
    candidates = candidate_sets(train, labels)
    out = {}
    for step in VERDICT_STEPS:
        prefixes, items, skipped = [], [], 0
        for ex in examples:
            got = verdict_prefix(ex, step, render_prompt(ex, labels, tokenizer, prompt_cfg), labels)
            if got is None:
                continue
            prefix, gold = got
            cut = split_verdict(step, ex.steps[step], labels)
            cands = candidates.get((step, cut.key, ex.query_type), [])
            if gold not in cands or len(cands) < 2:
                skipped += 1
                continue
            items.append((ex, gold, cands, (cut.key, ex.query_type)))
            prefixes.append(prefix)
        if not items:
            continue
        # each candidate with the line's end: a whole verdict, not the start of a longer one
        scores = candidate_logprobs(model, tokenizer, prefixes, [[f" {c}\n" for c in it[2]] for it in items],
                                    batch_size, device)
        probs = [dict(zip(cands, torch.tensor(lp).softmax(0).tolist())) for (_, _, cands, _), lp in zip(items, scores)]

        def auc(idx):
            return grouped_auc([items[i][3] for i in idx], [items[i][1] for i in idx], [probs[i] for i in idx])

        every = list(range(len(items)))
        out[step] = {"auc": auc(every), "n": len(items), "skipped": skipped,
                     "groups": len({it[3] for it in items}),
                     "slices": {name: auc([i for i in every if name in items[i][0].slices]) for name in slices or ()
                                if any(name in it[0].slices for it in items)}}
    return out
