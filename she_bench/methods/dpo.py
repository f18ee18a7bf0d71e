"""DPO (TRL DPOTrainer) on preference pairs built from the warm start's own samples.

Pair construction: for 2 x `train.dpo_max_pairs` train prompts in a seeded order, sample `train.dpo_samples` completions
from the warm start at the RL temperature. Chosen: a format-valid sample with the gold label,
preferring one whose verified steps are all right; when no sample is right, the gold
rationale (where the card's rationale_share makes it available; otherwise the prompt gives no pair).
Rejected: a sample with a wrong label or one that does not parse. Prompts without a rejected sample
give no pair. At most `train.dpo_max_pairs` pairs are kept; the pairs are
written to the run directory (dpo_pairs.jsonl).
"""
from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from she_bench.methods import METHODS
from she_bench.methods.common import (
    Context,
    JsonlLog,
    lora_config,
    seeded_sample,
    train_once,
    trainer_args,
)
from she_bench.methods.rollouts import sample_rollouts
from she_bench.models import load_model, load_tokenizer
from she_bench.reasoning.template import gold_rationale, render_prompt
from she_bench.runs import is_main_process, process_state


def build_pairs(ctx: Context, init: Path) -> list[dict]:
    cfg = ctx.cfg
    # about half the prompts yield a pair; sample twice as many prompts as pairs wanted
    examples = seeded_sample(ctx, 2 * cfg.train.dpo_max_pairs)
    samples_per_prompt = sample_rollouts(ctx, init, examples, cfg.train.dpo_samples, "dpo rollouts")
    tokenizer = load_tokenizer(init)
    pairs: list[dict] = []
    for ex, samples in zip(examples, samples_per_prompt):
        right = [s for s in samples if s["format_valid"] and s["pred"] == ex.label]
        wrong = [s for s in samples if s["pred"] != ex.label]
        if not wrong or not (right or ex.rationale):  # the gold fallback only where the card gives a rationale
            continue
        right.sort(key=lambda s: -sum(v is True for v in s["step_verdicts"].values()))
        pairs.append({"prompt": render_prompt(ex, ctx.bench.labels, tokenizer, cfg.prompt),
                      "chosen": right[0]["text"] if right else gold_rationale(ex),
                      "rejected": wrong[0]["text"], "example_id": ex.id, "chosen_is_gold": not right})
    pairs = pairs[: cfg.train.dpo_max_pairs]
    if is_main_process():
        (ctx.run.path / "dpo_pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return pairs


@METHODS.register("dpo")
def train(ctx: Context, init: Path) -> Path:
    return train_once(ctx.checkpoints, lambda: build_trainer(ctx, init), ctx)


def build_trainer(ctx: Context, init: Path) -> DPOTrainer:
    cfg = ctx.cfg
    with process_state().main_process_first():  # rank 0 samples and writes the pairs; the others read them
        pairs = build_pairs(ctx, init)
    if not pairs:
        raise RuntimeError("DPO found no preference pair: every warm-start sample had the gold label")
    ctx.run.update(dpo_pairs=len(pairs), dpo_pairs_with_gold_chosen=sum(p["chosen_is_gold"] for p in pairs))
    tokenizer = load_tokenizer(init)
    tokenizer.padding_side = "right"
    args = trainer_args(DPOConfig, cfg, ctx.checkpoints, max_steps=cfg.train.max_steps, learning_rate=cfg.train.lr,
                        per_device_train_batch_size=cfg.train.prompts_per_step, beta=cfg.train.dpo_beta,
                        max_length=cfg.warm_start.max_length, lr_scheduler_type="constant")
    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    peft = lora_config(cfg)
    # trl 1.16 cannot rebuild a reference from a model made in memory: hand it its own copy
    ref = None if peft else load_model(init)
    return DPOTrainer(model=load_model(init), ref_model=ref, args=args, train_dataset=data, processing_class=tokenizer,
                      peft_config=peft, callbacks=[JsonlLog(ctx)])
