"""Diversified data filtering before RL.

From `filter.rollouts` samples of the warm start per prompt: the prompt's pass rate (share of
samples with the gold label) and its number of distinct reasoning paths (distinct patterns of
step verdicts). Kept: prompts whose pass rate is inside `filter.pass_band`; then, so the kept
set stays diverse, no stratum (gold label, category or query type) may exceed
`filter.stratum_cap` of the final kept set, prompts with more distinct paths kept first. The
cap is met by water-filling: every stratum keeps min(its size, m) prompts for the largest m
at which the biggest stratum is still within the cap of the total. With fewer non-empty strata
than 1/cap no kept set can meet the cap, so it becomes 1/strata (equal shares at most). What
was kept and dropped, and why, with keep rates per stratum and slice, is written to
filter_report.json and filter_decisions.jsonl.
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

from she_bench.methods.common import Context, seeded_sample
from she_bench.methods.rollouts import sample_rollouts
from she_bench.runs import is_main_process, process_state, write_json


def stratum_of(ex, key: str) -> str:
    if key == "label":
        return ex.label
    if key == "query_type":
        return ex.query_type
    if key == "category":
        return ex.facts.get("query_category") or ex.facts.get("category") or "unknown"
    raise ValueError(f"unknown filter stratum '{key}' (label, category or query_type)")


def score(ctx: Context, init: Path, examples: list) -> list[dict]:
    """Per prompt: id, pass rate and distinct step-verdict patterns (rollouts from the shared cache)."""
    samples_per_prompt = sample_rollouts(ctx, init, examples, ctx.cfg.filter.rollouts, "filter rollouts")
    return [{"id": ex.id, "pass_rate": sum(s["pred"] == ex.label for s in samples) / len(samples),
             "paths": len({tuple(s["step_verdicts"].values()) for s in samples})}
            for ex, samples in zip(examples, samples_per_prompt)]


def in_band(rows: list[dict], band: list[float]) -> int:
    return sum(band[0] <= r["pass_rate"] <= band[1] for r in rows)


def estimate(ctx: Context, init: Path) -> tuple[list[dict], dict]:
    """The scored prompts (a seeded order of the train split, scored from its start) and how many were scored: with
    `filter.scoring` budget, rounds continue until the pass band keeps the RL budget's distinct prompts or the pool
    ends, each round sized by the keep rate so far."""
    f, cfg = ctx.cfg.filter, ctx.cfg
    if f.scoring == "fixed":
        rows = score(ctx, init, seeded_sample(ctx, f.max_prompts))
        return rows, {"scoring": "fixed", "rounds": 1}
    target = cfg.train.max_steps * cfg.train.prompts_per_step
    pool = seeded_sample(ctx, len(ctx.train_examples))
    rows, rounds, n = [], 0, min(len(pool), target)
    while n > len(rows):
        rows += score(ctx, init, pool[len(rows):n])
        rounds += 1
        kept = in_band(rows, f.pass_band)
        if kept >= target or n >= len(pool):
            break
        rate = max(kept / len(rows), 1.0 / len(rows))  # none kept yet: as if one had been
        n = min(len(pool), len(rows) + math.ceil((target - kept) / rate))
    return rows, {"scoring": "budget", "rounds": rounds, "target": target, "pool": len(pool)}


def select(ctx: Context, rows: list[dict]) -> tuple[list[str], list[dict]]:
    """Apply the band and the stratum cap; returns kept ids and a decision per prompt."""
    f = ctx.cfg.filter
    by_id = {ex.id: ex for ex in ctx.train_examples}
    low, high = f.pass_band
    decisions, in_band = [], defaultdict(list)
    for r in rows:
        ex = by_id[r["id"]]
        d = {**r, "stratum": stratum_of(ex, f.stratum), "label": ex.label,
             "slice": "tail" if "tail" in ex.slices else "head"}
        if r["pass_rate"] < low:
            d["decision"] = "dropped: too hard"
        elif r["pass_rate"] > high:
            d["decision"] = "dropped: too easy"
        else:
            d["decision"] = "kept"
            in_band[d["stratum"]].append(d)
        decisions.append(d)
    per_stratum = stratum_quota({k: len(v) for k, v in in_band.items()}, f.stratum_cap)
    rng = random.Random(ctx.cfg.rl_seed)
    for name, members in in_band.items():
        rng.shuffle(members)
        if f.prefer_diverse:
            members.sort(key=lambda d: -d["paths"])  # stable: random order within equal diversity
        for d in members[per_stratum[name]:]:
            d["decision"] = "dropped: stratum cap"
    kept = [d["id"] for d in decisions if d["decision"] == "kept"]
    return kept, decisions


def effective_cap(sizes: dict[str, int], cap: float) -> float:
    """The cap, or 1/strata where fewer non-empty strata than 1/cap make the cap impossible."""
    strata = sum(n > 0 for n in sizes.values())
    return max(cap, 1.0 / strata) if strata else cap


def stratum_quota(sizes: dict[str, int], cap: float) -> dict[str, int]:
    """How many prompts each stratum keeps: min(size, m) for the largest m such that no stratum
    exceeds `effective_cap` of the kept total (the largest kept set that meets the cap)."""
    cap = effective_cap(sizes, cap)
    for m in range(max(sizes.values(), default=0), 0, -1):
        quota = {k: min(n, m) for k, n in sizes.items()}
        if max(quota.values()) <= cap * sum(quota.values()) + 1e-9:
            return quota
    return {k: 0 for k in sizes}


def report(decisions: list[dict], cap: float | None = None) -> dict:
    out = {"scored": len(decisions), "kept": sum(d["decision"] == "kept" for d in decisions),
           "by_reason": dict(Counter(d["decision"] for d in decisions)), "by_stratum": {}, "by_slice": {}}
    for key, field in (("by_stratum", "stratum"), ("by_label", "label"), ("by_slice", "slice")):
        groups = defaultdict(Counter)
        for d in decisions:
            groups[d[field]][d["decision"]] += 1
        out[key] = {k: dict(v) for k, v in sorted(groups.items())}
        out[f"keep_rate_{key}"] = {k: round(v["kept"] / sum(v.values()), 4) for k, v in sorted(groups.items())}
    kept_strata = Counter(d["stratum"] for d in decisions if d["decision"] == "kept")
    out["kept_share_by_stratum"] = {k: round(n / max(1, out["kept"]), 4) for k, n in sorted(kept_strata.items())}
    if cap is not None:
        in_band = Counter(d["stratum"] for d in decisions if d["decision"] in ("kept", "dropped: stratum cap"))
        out["stratum_cap"] = cap
        out["stratum_cap_effective"] = round(effective_cap(dict(in_band), cap), 4)
    out["pass_rate_histogram"] = dict(sorted(Counter(round(d["pass_rate"], 2) for d in decisions).items()))
    out["mean_paths_kept"] = round(sum(d["paths"] for d in decisions if d["decision"] == "kept")
                                   / max(1, out["kept"]), 3)
    return out


def filter_prompts(ctx: Context, init: Path) -> tuple[list, dict[str, float]]:
    """The kept train examples and every scored prompt's pass rate; writes the filter's report."""
    with process_state().main_process_first():  # rank 0 samples and caches the rollouts; the others read them
        rows, how = estimate(ctx, init)
    kept, decisions = select(ctx, rows)
    if is_main_process():
        write_json(ctx.run.path / "filter_report.json", {**report(decisions, ctx.cfg.filter.stratum_cap), **how})
        (ctx.run.path / "filter_decisions.jsonl").write_text("".join(json.dumps(d) + "\n" for d in decisions))
    keep = set(kept)
    return [ex for ex in ctx.train_examples if ex.id in keep], {r["id"]: r["pass_rate"] for r in rows}
