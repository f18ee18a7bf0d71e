"""What every method shares: the context it runs in, TRL arguments, LoRA, logging, resume."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm
from transformers import ProgressCallback, TrainerCallback
from transformers.integrations import TensorBoardCallback

from she_bench import console
from she_bench.config import Config
from she_bench.data.cards import Benchmark
from she_bench.data.schema import Example
from she_bench.models import loads, set_aside, unreadable
from she_bench.runs import Run, process_state

LOG_KEYS = {  # TRL log name -> train_log.jsonl name
    "loss": "loss", "reward": "reward_mean", "reward_std": "reward_std", "frac_reward_zero_std": "zero_std_groups",
    "entropy": "entropy", "kl": "kl", "clip_ratio/region_mean": "clip_ratio",
    "completions/mean_length": "completion_length", "learning_rate": "lr", "grad_norm": "grad_norm",
    "rewards/chosen": "dpo_chosen_reward", "rewards/rejected": "dpo_rejected_reward",
    "rewards/accuracies": "dpo_accuracy", "rewards/margins": "dpo_margin", "mean_token_accuracy": "token_accuracy",
    "num_tokens": "num_tokens",
}


@dataclass
class Context:
    cfg: Config
    bench: Benchmark
    run: Run
    base_model: Path
    """The untrained or pretrained model folder the warm start begins from."""
    stage: str = "main"
    examples: list[Example] | None = None
    """The train prompts this method sees (None: the whole train split); set by filtering and curricula."""
    checkpoint_dir: Path | None = None
    warm_start: Path | None = None
    """The shared warm start: every stage's KL reference, the default judge and the generative GRM's base."""

    @property
    def train_examples(self) -> list[Example]:
        return self.examples if self.examples is not None else self.bench.splits["train"]

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.run.path / "checkpoints"


def device_kwargs() -> dict:
    cuda = torch.cuda.is_available()
    return {"use_cpu": not cuda, "bf16": cuda and torch.cuda.is_bf16_supported()}


def trainer_args(cls, cfg: Config, out_dir: Path, **kw):
    """TRL config with the settings every method shares (no hub, safetensors; TensorBoard if train.report_to). The
    Trainer's seed is the method's (`cfg.rl_seed`); the warm start passes the run's own."""
    base = dict(
        output_dir=str(out_dir), seed=cfg.rl_seed, data_seed=cfg.rl_seed, report_to=cfg.train.report_to,
        logging_steps=1, save_strategy="steps", save_steps=cfg.train.save_steps,
        save_total_limit=cfg.train.keep_checkpoints, save_only_model=False,
        disable_tqdm=False, dataloader_num_workers=0, remove_unused_columns=False, **device_kwargs(),
    )
    base.update(kw)
    return cls(**base)


def lora_config(cfg: Config):
    if not cfg.train.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.train.lora_r, lora_alpha=cfg.train.lora_alpha, lora_dropout=cfg.train.lora_dropout,
                      target_modules=cfg.train.lora_target, task_type="CAUSAL_LM")


class JsonlLog(TrainerCallback):
    """Writes one JSON line per logged trainer step: the shared keys, the stage, seconds per step."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.last = None
        self.num_tokens = 0.0

    def on_train_end(self, args, state, control, **kw):
        """The stage's budget: optimizer steps, prompts per step, tokens through the trainer."""
        if not state.is_world_process_zero:
            return
        group = getattr(args, "num_generations", None) or 1
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        self.ctx.run.log({"stage": self.ctx.stage, "event": "trained", "method": self.ctx.cfg.method,
                          "steps": state.global_step, "prompts_per_step": per_step // group,
                          "completions_per_prompt": group,
                          "num_tokens": int(state.num_input_tokens_seen or self.num_tokens)})

    def on_step_begin(self, args, state, control, **kw):
        if self.last is None:
            self.last = time.time()

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "train_runtime" in logs or not state.is_world_process_zero:
            return
        if isinstance(logs.get("num_tokens"), (int, float)):
            self.num_tokens = logs["num_tokens"]
        now = time.time()
        rec = {"stage": self.ctx.stage, "method": self.ctx.cfg.method, "step": state.global_step,
               "seconds_per_step": round(now - self.last, 4) if self.last else None}
        self.last = now
        for key, value in logs.items():
            if key in LOG_KEYS:
                rec[LOG_KEYS[key]] = value
            elif key.startswith(("she/", "rewards/")):
                rec[key.removeprefix("she/")] = value
        self.ctx.run.log(rec)


class StageProgress(TrainerCallback):
    """One progress bar per training stage, showing the figures a user watches (reward, format-valid,
    loss) instead of the Trainer's printed dictionaries."""

    def __init__(self, ctx: Context):
        self.ctx, self.bar = ctx, None

    def on_train_begin(self, args, state, control, **kw):
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step,
                            desc=f"{self.ctx.stage} ({self.ctx.cfg.method})", unit="step", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kw):
        if self.bar is None or not logs:
            return
        shown = {"reward": logs.get("reward"), "loss": logs.get("loss")}
        if "she/parse_failure_rate" in logs:
            shown["format_valid"] = 1 - logs["she/parse_failure_rate"]
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items() if isinstance(v, (int, float))}, refresh=False)

    def on_train_end(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def last_checkpoint(out_dir: Path) -> str | None:
    """The newest checkpoint in out_dir whose files load; newer ones that do not are set aside (damaged/)."""
    cks = sorted((p for p in out_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                 key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    damaged = []
    for ck in cks:
        reason = unreadable(ck, "trainer_state.json")
        if reason is None:
            break
        damaged.append((ck, reason))
    resume = cks[len(damaged)] if len(damaged) < len(cks) else None
    for ck, reason in damaged:
        set_aside(ck, reason, f"; resuming from {resume.name if resume else 'the start'}")
    return str(resume) if resume else None


def train_once(out_dir: Path, build_trainer: Callable, ctx: Context | None = None) -> Path:
    """out_dir/final: trained by the trainer `build_trainer()` makes, resuming from out_dir's newest
    checkpoint, unless a finished training is already there (then nothing is built). Finished means a
    final folder that loads: train_and_save renames it into place only once whole, and one damaged since
    is set aside and trained again."""
    final = out_dir / "final"
    with process_state().main_process_first():  # rank 0 sets a damaged one aside; the others then agree
        done = loads(final)
    if done:
        return final
    return train_and_save(build_trainer(), out_dir, final, ctx)


@contextmanager
def in_stage(ctx: Context, name: str):
    """Log lines written inside carry `name` as their stage (warm start, GRM, curriculum stage)."""
    before, ctx.stage = ctx.stage, name
    try:
        yield
    finally:
        ctx.stage = before


def seeded_sample(ctx: Context, n: int) -> list:
    """The first n train examples in an order fixed by the run's seed (DPO pairs, filtering, GRM data)."""
    examples = list(ctx.train_examples)
    random.Random(ctx.cfg.seed).shuffle(examples)
    return examples[:n]


def tensorboard_dir(ctx: Context) -> Path:
    """Where a stage's TensorBoard event files go: <run>/tensorboard/<stage> (warm_start, grm, main, 1-head, ...)."""
    return ctx.run.path / "tensorboard" / ctx.stage.replace(":", "-")


def train_and_save(trainer, out_dir: Path, final_dir: Path, ctx: Context | None = None) -> Path:
    """Train (resuming from the newest checkpoint in out_dir), then save the final model as
    safetensors, LoRA merged, via a temporary folder so a kill never leaves half a model.
    Data-parallel: the main process saves; every replica's weight checksum is logged."""
    if not console.VERBOSE and ctx is not None:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(StageProgress(ctx))
    if ctx is not None:  # TensorBoard's curves go beside the run's other files, not under the trainer's output
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback):
                callback.logging_dir = str(tensorboard_dir(ctx))
    with process_state().main_process_first():  # rank 0 sets damaged checkpoints aside; the others then agree
        resume = last_checkpoint(out_dir)
    if ctx is not None:  # the steps after the checkpoint are trained, and logged, again
        ctx.run.cut_log(ctx.stage, int(resume.rsplit("-", 1)[1]) if resume else 0)
    trainer.train(resume_from_checkpoint=resume)
    acc = trainer.accelerator
    model = acc.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if acc.num_processes > 1:
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1).to(acc.device)
        sums = acc.gather(checksum).tolist()
        if acc.is_main_process and ctx is not None:
            ctx.run.log({"stage": ctx.stage, "event": "replica_check", "checksums": sums,
                         "agree": max(sums) - min(sums) <= 1e-6 * max(1.0, abs(sums[0]))})
    if acc.is_main_process:
        tmp = final_dir.with_name(final_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        trainer.processing_class.save_pretrained(tmp)
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(tmp, final_dir)
    acc.wait_for_everyone()
    return final_dir



def config_hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]

