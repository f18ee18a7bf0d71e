"""Offline rollouts of a checkpoint, scored by the verifier (DPO pairs, data filtering, GRM data)."""
from __future__ import annotations

from pathlib import Path

from she_bench.engines import build_engine
from she_bench.methods.common import Context
from she_bench.reasoning.template import render_prompt
from she_bench.rewards.verifier import score_output
from she_bench.runs import is_main_process, read_jsonl, write_jsonl


def sample_rollouts(ctx: Context, model: Path, examples: list, k: int, desc: str = "rollouts",
                    cache: Path | None = None) -> list[list[dict]]:
    """k sampled completions per example (at the RL temperature, through `cfg.engine`), each as
    {"text", **score_output}. With `cache`, they are written there once and read back after."""
    if cache is not None:
        rows = read_jsonl(cache)
        if [r["id"] for r in rows] == [ex.id for ex in examples] and all(len(r["samples"]) == k for r in rows):
            out = [r["samples"] for r in rows]
            log_generated(ctx, desc, out)
            return out
    cfg = ctx.cfg
    engine = build_engine(cfg.engine, model)
    prompts = [render_prompt(ex, ctx.bench.labels, getattr(engine, "tokenizer", None), cfg.prompt) for ex in examples for _ in range(k)]
    print(f"{desc}: {len(examples)} prompts x {k} samples", flush=True)
    gens = engine.generate(prompts, max_new_tokens=cfg.rl.max_completion_length, batch_size=cfg.eval.batch_size,
                           temperature=cfg.rl.temperature, seed=cfg.seed)
    out = [[{"text": g.text, "n_tokens": g.n_tokens, **score_output(ex, g.text, ctx.bench.labels)}
            for g in gens[i * k:(i + 1) * k]] for i, ex in enumerate(examples)]
    log_generated(ctx, desc, out)
    if cache is not None and is_main_process():
        write_jsonl(cache, [{"id": ex.id, "samples": s} for ex, s in zip(examples, out)])
    return out


def log_generated(ctx: Context, desc: str, samples: list[list[dict]]) -> None:
    """A train-log event with what these rollouts cost, for the run's budget (methods.common.run_budget)."""
    flat = [s for group in samples for s in group]
    ctx.run.log({"stage": ctx.stage, "event": "generated", "what": desc, "sequences": len(flat),
                 "tokens": sum(int(s.get("n_tokens") or 0) for s in flat)})
