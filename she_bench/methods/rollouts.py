"""Offline rollouts of a checkpoint, scored by the verifier (DPO pairs, data filtering, GRM data).

Rollouts are a shared artefact: the same model, prompts, sample count, temperature, length and seed give
the same samples, so they are cached under the she-bench cache by the hash of all of these and built
once (every SHE variant of a seed filters from the same rollouts; every DPO cell pairs the same ones).
"""
from __future__ import annotations

from pathlib import Path

from she_bench.engines import build_engine
from she_bench.locks import file_lock
from she_bench.methods.common import Context, config_hash
from she_bench.models import cache_dir, model_hash
from she_bench.reasoning.template import render_prompt
from she_bench.rewards.verifier import score_output
from she_bench.runs import read_jsonl, write_jsonl


def sample_rollouts(ctx: Context, model: Path, examples: list, k: int, desc: str = "rollouts") -> list[list[dict]]:
    """k sampled completions per example (at the RL temperature, through `cfg.engine`), each as
    {"text", **score_output}; read from the shared cache when these rollouts were made before."""
    cfg = ctx.cfg
    key = config_hash(model_hash(model), [ex.id for ex in examples], k, cfg.rl.temperature,
                      cfg.rl.max_completion_length, cfg.rl_seed, cfg.engine, cfg.prompt, ctx.bench.data_hash())
    cache = cache_dir() / "rollouts" / f"{ctx.bench.name}-{key}.jsonl"
    with file_lock(cache):  # per process: under data parallelism the first rank in builds them, the others read
        rows = read_jsonl(cache)
        if [r["id"] for r in rows] == [ex.id for ex in examples] and all(len(r["samples"]) == k for r in rows):
            out = [r["samples"] for r in rows]
        else:
            engine = build_engine(cfg.engine, model)
            prompts = [render_prompt(ex, ctx.bench.labels, getattr(engine, "tokenizer", None), cfg.prompt)
                       for ex in examples for _ in range(k)]
            print(f"{desc}: {len(examples)} prompts x {k} samples", flush=True)
            gens = engine.generate(prompts, max_new_tokens=cfg.rl.max_completion_length, batch_size=cfg.eval.batch_size,
                                   temperature=cfg.rl.temperature, seed=cfg.rl_seed)
            out = [[{"text": g.text, "n_tokens": g.n_tokens, **score_output(ex, g.text, ctx.bench.labels)}
                    for g in gens[i * k:(i + 1) * k]] for i, ex in enumerate(examples)]
            write_jsonl(cache, [{"id": ex.id, "samples": s} for ex, s in zip(examples, out)])
    log_generated(ctx, desc, out)
    return out


def log_generated(ctx: Context, desc: str, samples: list[list[dict]]) -> None:
    """A train-log event with what these rollouts cost, for the run's budget (runs.run_budget): counted by
    every run that uses them, whether it generated them or read them from the cache."""
    flat = [s for group in samples for s in group]
    ctx.run.log({"stage": ctx.stage, "event": "generated", "what": desc, "sequences": len(flat),
                 "tokens": sum(int(s.get("n_tokens") or 0) for s in flat)})
