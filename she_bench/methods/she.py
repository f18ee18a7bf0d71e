"""SHE: SRPO + diversified data filtering + a multi-stage curriculum.

Each curriculum stage trains one method on a subset of the (filtered) prompts, starting from
the previous stage's final model, for its share of train.max_steps; the training log marks
each record with its stage. Without stages, one stage of SRPO on every kept prompt.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from she_bench.config import ConfigError, StageConfig
from she_bench.methods import METHODS, get_method
from she_bench.methods.common import Context
from she_bench.methods.filtering import filter_prompts


def stage_examples(stage: StageConfig, examples: list, pass_rates: dict[str, float]) -> list:
    out = examples
    if stage.slices:
        out = [ex for ex in out if any(s in ex.slices for s in stage.slices)]
    if stage.pass_band:
        low, high = stage.pass_band
        out = [ex for ex in out if ex.id in pass_rates and low <= pass_rates[ex.id] <= high]
    return out


@METHODS.register("she")
def train(ctx: Context, init: Path) -> Path:
    cfg = ctx.cfg
    examples, pass_rates = ctx.train_examples, {}
    if cfg.filter.enabled:
        examples, pass_rates = filter_prompts(ctx, init)
    stages = cfg.curriculum or [StageConfig(name="rl", method="srpo", share=1.0)]
    model, base_checkpoints = init, ctx.checkpoints
    for i, stage in enumerate(stages):
        chosen = stage_examples(stage, examples, pass_rates)
        if not chosen:
            kept = f"the filter kept {len(examples)} of the prompts it scored" if cfg.filter.enabled \
                else f"{len(examples)} train prompts"
            raise ConfigError(f"curriculum stage '{stage.name}' selects no prompt ({kept}; the stage keeps slices "
                              f"{stage.slices or 'all'}, pass band {stage.pass_band or 'any'}): raise "
                              "filter.max_prompts (or set filter.scoring=budget), "
                              "widen filter.pass_band or the stage's pass_band, or drop the stage")
        steps = max(1, round(stage.share * cfg.train.max_steps))
        stage_cfg = dataclasses.replace(cfg, method=stage.method, train=dataclasses.replace(cfg.train, max_steps=steps))
        stage_ctx = dataclasses.replace(ctx, cfg=stage_cfg, stage=f"{i + 1}:{stage.name}", examples=chosen,
                                        checkpoint_dir=base_checkpoints / f"stage{i + 1}-{stage.name}")
        ctx.run.log({"stage": stage_ctx.stage, "event": "stage_start", "method": stage.method, "prompts": len(chosen),
                     "steps": steps})
        model = get_method(stage.method)(stage_ctx, model)
    return model
