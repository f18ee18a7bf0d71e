"""Training the generative GRM: SFT of the warm start to answer '+' or '-' for each step.

Its data are the warm start's own rollouts on train prompts, each written step labelled by
the offline verifier (so it learns only steps the benchmark annotates). The result is cached
by the hash of the warm start and the GRM settings.
"""
from __future__ import annotations

import random
from pathlib import Path

from she_bench.engines import build_engine
from she_bench.methods.common import Context, config_hash
from she_bench.methods.sft import run_sft
from she_bench.models import cache_dir, model_hash
from she_bench.reasoning.parser import parse
from she_bench.reasoning.template import render_prompt
from she_bench.rewards.grm import check_prompt
from she_bench.rewards.verifier import verify_steps

MAX_PROMPTS = 600


def grm_rows(ctx: Context, init: Path) -> list[dict]:
    cfg = ctx.cfg
    labels = ctx.bench.labels
    examples = list(ctx.train_examples)
    random.Random(cfg.seed).shuffle(examples)
    examples = examples[:MAX_PROMPTS]
    engine = build_engine("transformers", init)
    prompts = [render_prompt(ex, labels, engine.tokenizer) for ex in examples for _ in range(cfg.reward.grm_rollouts)]
    gens = engine.generate(prompts, max_new_tokens=cfg.rl.max_completion_length, batch_size=cfg.eval.batch_size,
                           temperature=cfg.rl.temperature, seed=cfg.seed)
    rows = []
    for i, gen in enumerate(gens):
        ex = examples[i // cfg.reward.grm_rollouts]
        parsed = parse(gen.text, labels)
        for step, verdict in verify_steps(ex, parsed, labels).items():
            if verdict is not None and step in parsed.steps:
                rows.append({"prompt": check_prompt(ex, parsed, step), "completion": " +" if verdict else " -"})
    return rows


def train_generative_grm(ctx: Context, init: Path) -> Path:
    cfg = ctx.cfg
    key = config_hash(model_hash(init), cfg.reward.grm_rollouts, cfg.reward.grm_epochs, cfg.rl.temperature, cfg.seed)
    out_dir = cache_dir() / "grm" / f"{ctx.bench.name}-{key}"
    if (out_dir / "final" / "config.json").exists():
        return out_dir / "final"
    stage, ctx.stage = ctx.stage, "grm"
    try:
        return run_sft(ctx, init, out_dir, cfg.reward.grm_epochs, cfg.warm_start.lr, rows=grm_rows(ctx, init))
    finally:
        ctx.stage = stage
