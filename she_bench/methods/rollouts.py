"""Offline rollouts of a checkpoint, scored by the verifier (DPO pairs, data filtering, GRM data)."""
from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from she_bench.engines import build_engine
from she_bench.methods.common import Context
from she_bench.reasoning.template import render_prompt
from she_bench.rewards.verifier import score_output

CHUNK = 64


def sample_rollouts(ctx: Context, model: Path, examples: list, k: int, desc: str = "rollouts") -> list[list[dict]]:
    """k sampled completions per example (at the RL temperature), each as {"text", **score_output}."""
    cfg = ctx.cfg
    engine = build_engine("transformers", model)
    out: list[list[dict]] = []
    for start in tqdm(range(0, len(examples), CHUNK), desc=desc, unit="chunk"):
        batch = examples[start:start + CHUNK]
        prompts = [render_prompt(ex, ctx.bench.labels, engine.tokenizer) for ex in batch for _ in range(k)]
        gens = engine.generate(prompts, max_new_tokens=cfg.rl.max_completion_length, batch_size=cfg.eval.batch_size,
                               temperature=cfg.rl.temperature, seed=cfg.seed + start, progress=False)
        for i, ex in enumerate(batch):
            out.append([{"text": g.text, **score_output(ex, g.text, ctx.bench.labels)} for g in gens[i * k:(i + 1) * k]])
    return out
