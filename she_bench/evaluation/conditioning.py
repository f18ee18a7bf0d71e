"""Does the policy's verdict depend on the input? A teacher-forced AUC per verdict.

For each evaluated pair and each verdict step with a gold verdict (reasoning/verdicts.py), the model
reads the gold prefix: the prompt, the gold steps before it, and the gold step up to its verdict
('3. Category matching: boots vs sandals:'). Each candidate verdict is scored by its sequence
log-probability after that prefix, the line's end included (so 'same' is not scored as the start of
'same group'), one forward pass per candidate; the candidates' probabilities
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
    lines = gold_rationale(ex, withheld_ok=True).split("\n")
    k = STEPS.index(step)
    head = step_line(k + 1, step, "").rstrip() if not cut.prefix else f"{k + 1}. {STEP_TITLES[step]}: {cut.prefix}"
    return prompt + "\n".join(lines[:k] + [head]), cut.value


@torch.no_grad()
def sequence_logprobs(model, tokenizer, prefixes: list[str], continuations: list[str], batch_size: int = 64,
                      device: str = "cpu") -> list[float]:
    """log P(continuation | prefix) for each pair. The continuation's tokens are found by character offsets in
    the jointly tokenized text (a merge across the boundary is scored as the model reads it). Rows are
    left-padded with explicit positions, so every continuation ends the row and only its last positions'
    logits are computed."""
    tokenizer.padding_side = "left"
    out: list[float] = []
    for start in range(0, len(prefixes), batch_size):
        chunk = prefixes[start:start + batch_size]
        texts = [p + c for p, c in zip(chunk, continuations[start:start + batch_size])]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False, return_offsets_mapping=True)
        ends = enc.pop("offset_mapping")[..., 1]
        ids, mask = enc["input_ids"], enc["attention_mask"]
        cont = (ends > torch.tensor([len(p) for p in chunk]).unsqueeze(1)) & mask.bool()
        keep = int(cont.sum(1).max()) + 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       logits_to_keep=keep).logits[:, -keep:]
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        target = ids[:, -(keep - 1):].to(device)
        picked = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        out += (picked * cont[:, -(keep - 1):].to(device)).sum(1).tolist()
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
        jobs, items, skipped = [], [], 0
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
            jobs += [(prefix, f" {c}\n") for c in cands]  # with the line's end: a whole verdict, not a prefix of one
        if not items:
            continue
        scores = iter(sequence_logprobs(model, tokenizer, [p for p, _ in jobs], [c for _, c in jobs], batch_size, device))
        probs = [dict(zip(cands, torch.tensor([next(scores) for _ in cands]).softmax(0).tolist()))
                 for _, _, cands, _ in items]

        def auc(idx):
            return grouped_auc([items[i][3] for i in idx], [items[i][1] for i in idx], [probs[i] for i in idx])

        every = list(range(len(items)))
        out[step] = {"auc": auc(every), "n": len(items), "skipped": skipped,
                     "groups": len({it[3] for it in items}),
                     "slices": {name: auc([i for i in every if name in items[i][0].slices]) for name in slices or ()
                                if any(name in it[0].slices for it in items)}}
    return out
