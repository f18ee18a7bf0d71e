"""Training the generative GRM: SFT of the warm start to answer '+' or '-' for each step.

Its data are the warm start's own rollouts on train prompts, each written step labelled by
the offline verifier (so it learns only steps the benchmark annotates), plus the steps of
each prompt's gold rationale as correct examples. The result is cached
by the hash of the warm start and the GRM settings.
"""
from __future__ import annotations

from pathlib import Path

from she_bench.locks import file_lock
from she_bench.methods.common import Context, config_hash, in_stage, seeded_sample
from she_bench.methods.rollouts import sample_rollouts
from she_bench.methods.sft import run_sft
from she_bench.models import cache_dir, load_tokenizer, model_hash, unreadable
from she_bench.reasoning.parser import parse
from she_bench.reasoning.template import gold_rationale
from she_bench.rewards.grm import GENERATIVE_ANSWERS, answer_token_ids, check_prompt

def grm_rows(ctx: Context, init: Path) -> list[dict]:
    labels = ctx.bench.labels
    right, wrong = ctx.cfg.reward.grm_answers or GENERATIVE_ANSWERS
    examples = seeded_sample(ctx, ctx.cfg.reward.grm_prompts)
    rows = []
    for ex, samples in zip(examples, sample_rollouts(ctx, init, examples, ctx.cfg.reward.grm_rollouts, "grm data")):
        if ex.rationale:  # the gold rationale's steps as right examples, where the card gives it
            gold = parse(gold_rationale(ex), labels)
            rows += [{"prompt": check_prompt(ex, gold, step), "completion": right} for step in ex.steps if step in gold.steps]
        for s in samples:
            parsed = parse(s["text"], labels)
            rows += [{"prompt": check_prompt(ex, parsed, step), "completion": right if verdict else wrong}
                     for step, verdict in s["step_verdicts"].items() if verdict is not None and step in parsed.steps]
    return rows


def train_generative_grm(ctx: Context, init: Path) -> Path:
    cfg = ctx.cfg
    answers = tuple(cfg.reward.grm_answers or GENERATIVE_ANSWERS)
    answer_token_ids(load_tokenizer(init), answers, f"generative GRM ({init})")  # refuse before training, not after
    key = config_hash(model_hash(init), ctx.bench.data_hash(), cfg.reward.grm_rollouts, cfg.reward.grm_prompts, cfg.reward.grm_epochs,
                      cfg.rl.temperature, cfg.seed, answers)
    out_dir = cache_dir() / "grm" / f"{ctx.bench.name}-{key}"
    if unreadable(out_dir / "final", "config.json", "*.safetensors") is None:
        # whole already, no lock needed: after training rank 0 alone scores the GRM (pipeline.grm_quality), where a
        # data-parallel lock would wait for ranks that have finished
        return out_dir / "final"
    with in_stage(ctx, "grm"), file_lock(out_dir, collective=True):
        return run_sft(ctx, init, out_dir, cfg.reward.grm_epochs, cfg.warm_start.lr, rows=lambda: grm_rows(ctx, init))
