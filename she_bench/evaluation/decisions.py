"""Where the policy decides, and how far training moved it: read from the greedy test outputs.

Mean token entropy is dominated by the tokens a policy copies (query and item facts), so it cannot show a collapse
where one matters. This module reads each greedy output once more, teacher-forced, and reports:

* the entropy at the **decision tokens**: the first token of each verdict of the comparison steps (category and
  attribute matching, after the last ': ' of each part), of the relevance judgment's label, and of the final
  `Label:` line, per step kind (reasoning/verdicts.py says where a verdict starts);
* the mean entropy of the **top 20%** highest-entropy tokens of each output (the "forking" tokens, as TRL's
  `top_entropy_quantile` selects them);
* with a reference model (the warm start): the **KL** from the policy to the reference, exact per position over
  the vocabulary and averaged over the output's tokens, and the share of **labels changed** against the
  reference's own greedy labels (generated once per reference and evaluation set, and cached).

Entropies are in nats. Each output's figures go into its predictions.jsonl line; `metrics.json` gets their means.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from she_bench.data.schema import STEP_TITLES

DECISION_KINDS = ("category_matching", "attribute_matching", "relevance_judgment", "label")
TOP_SHARE = 0.2
"""The share of an output's tokens, by entropy, whose mean is reported as its forking-token entropy."""
MAX_LOGIT_FLOATS = 64 * 1024 * 1024
"""A micro-batch's logits are kept under this many floats (256 MB), whatever the vocabulary."""


def decision_starts(text: str) -> dict[str, list[int]]:
    """Character offsets in an output where a decision starts, per kind: each verdict of the comparison steps (after
    the last ':' of each '; '-joined part), the relevance judgment's label, and the final label. A step written
    without a verdict contributes none."""
    out: dict[str, list[int]] = {k: [] for k in DECISION_KINDS}
    pos = 0
    for line in text.split("\n"):
        body = line.split(". ", 1)[1] if ". " in line.split(":", 1)[0] else line
        head = body.split(":", 1)[0].strip()
        offset = pos + (len(line) - len(body))
        kind = next((s for s, title in STEP_TITLES.items() if head == title and s in DECISION_KINDS), None)
        if head == "Label":
            kind = "label"
        if kind is not None and ":" in body:
            rest_at = body.index(":") + 1
            if kind in ("category_matching", "attribute_matching"):
                start = rest_at
                for part in body[rest_at:].split(";"):
                    if ":" in part:
                        out[kind].append(_skip_spaces(body, start + part.rindex(":") + 1) + offset)
                    start += len(part) + 1
            else:
                out[kind].append(_skip_spaces(body, rest_at) + offset)
        pos += len(line) + 1
    return {k: [i for i in v if i < len(text)] for k, v in out.items()}


def _skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i] == " ":
        i += 1
    return i


def _token_at(ends: list[int], char: int) -> int | None:
    """The index of the completion token that holds character `char` (the first whose span ends after it)."""
    for i, end in enumerate(ends):
        if end > char:
            return i
    return None


@torch.no_grad()
def read_outputs(model, tokenizer, prompts: list[str], completions: list[str], reference=None,
                 batch_size: int = 32) -> list[dict]:
    """Per output, teacher-forced: {entropy: [per completion token], kl: [per token] or None, ends: [character end
    of each completion token within the completion]}. Prompt and completion are tokenized together (as the policy
    read them) and cut where the completion's characters start."""
    rows = []
    for p, c in zip(prompts, completions):
        enc = tokenizer(p + c, add_special_tokens=False, return_offsets_mapping=True)
        first = next((i for i, (_, e) in enumerate(enc["offset_mapping"]) if e > len(p)), len(enc["input_ids"]))
        first = max(first, 1)  # the first token has no prediction to read
        rows.append((enc["input_ids"], first, [e - len(p) for _, e in enc["offset_mapping"][first:]]))
    vocab = model.get_output_embeddings().weight.shape[0]
    out: list[dict] = [{} for _ in rows]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    i = 0
    while i < len(order):
        longest = len(rows[order[i]][0])
        size = max(1, min(batch_size, MAX_LOGIT_FLOATS // max(1, longest * vocab)))
        idx = order[i:i + size]
        i += size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(idx), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, j in enumerate(idx):
            seq = rows[j][0]
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
        device = next(model.parameters()).device
        logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
        ent = -(logp.exp() * logp).sum(-1)
        kl = None
        if reference is not None:
            ref = torch.log_softmax(reference(input_ids=ids.to(device),
                                              attention_mask=mask.to(device)).logits.float(), -1)
            kl = (logp.exp() * (logp - ref)).sum(-1).clamp_min(0.0)
            del ref
        for r, j in enumerate(idx):
            seq, first, ends = rows[j]
            positions = slice(first - 1, len(seq) - 1)  # logits at t-1 predict token t
            out[j] = {"entropy": ent[r, positions].tolist(),
                      "kl": kl[r, positions].tolist() if kl is not None else None, "ends": ends}
        del logp, ent, kl
    return out


def output_figures(text: str, read: dict) -> dict:
    """One output's decision entropies (mean per kind, None where it wrote no such decision), its top-20% token
    entropy and its mean KL to the reference."""
    ent, ends = read["entropy"], read["ends"]
    per_kind = {}
    for kind, chars in decision_starts(text).items():
        at = [_token_at(ends, c) for c in chars]
        vals = [ent[t] for t in at if t is not None and t < len(ent)]
        per_kind[kind] = round(sum(vals) / len(vals), 6) if vals else None
    top = sorted(ent, reverse=True)[:max(1, math.ceil(TOP_SHARE * len(ent)))] if ent else []
    kl = read.get("kl")
    return {"decision_entropy": per_kind, "top_entropy": round(sum(top) / len(top), 6) if top else None,
            "kl_ref": round(sum(kl) / len(kl), 6) if kl else None}


def summarise(records: list[dict], changed: float | None = None) -> dict:
    """Means over outputs of each figure (each output weighs one; an output without a decision of a kind is left
    out of that kind's mean, and counted)."""
    def mean(values):
        vals = [v for v in values if v is not None]
        return (round(sum(vals) / len(vals), 6) if vals else None), len(vals)

    out: dict = {"entropy": {}, "outputs": {}}
    for kind in DECISION_KINDS:
        out["entropy"][kind], out["outputs"][kind] = mean((r.get("decision_entropy") or {}).get(kind) for r in records)
    out["top_entropy"], _ = mean(r.get("top_entropy") for r in records)
    out["kl_to_reference"], _ = mean(r.get("kl_ref") for r in records)
    out["labels_changed"] = changed
    out["top_share"] = TOP_SHARE
    return out


def reference_labels(reference: Path, examples: list, prompts: list[str], labels: list[str], cfg,
                     cache: Path) -> dict[str, str | None]:
    """The reference model's greedy labels on the evaluated examples (the warm start's, for the share of labels a
    method changed), generated once per reference, example set and generation settings, and cached."""
    from she_bench.engines import build_engine
    from she_bench.models import model_hash
    from she_bench.rewards.verifier import score_output

    key = hashlib.sha256(json.dumps([model_hash(reference), [ex.id for ex in examples], prompts,
                                     cfg.eval.max_new_tokens, cfg.engine]).encode()).hexdigest()[:16]
    path = cache / "reference_labels" / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    engine = build_engine(cfg.engine, reference)
    gens = engine.generate(prompts, max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size,
                           seed=cfg.seed, progress=False)
    steps = cfg.prompt.style == "steps"
    out = {ex.id: score_output(ex, g.text, labels, steps)["pred"] for ex, g in zip(examples, gens)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, sort_keys=True))
    tmp.replace(path)
    return out


def labels_changed(records: list[dict], reference: dict[str, str | None]) -> float | None:
    """Share of outputs whose label differs from the reference's on the same pair."""
    both = [r for r in records if r["id"] in reference]
    return round(sum(r.get("pred") != reference[r["id"]] for r in both) / len(both), 6) if both else None
