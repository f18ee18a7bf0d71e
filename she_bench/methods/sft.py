"""SFT on gold rationales (TRL SFTTrainer): the shared warm start and the SFT baseline.

The warm start is cached under the she-bench cache by the hash of everything that decides it
(base model, training data, warm-start config, LoRA settings, seed), so every method of a
benchmark and seed starts from the very same checkpoint. The SFT baseline continues SFT from
the warm start for `train.sft_epochs` more epochs at the warm-start rate; `sft-matched` continues it
with the RL recipes' prompts and optimizer steps instead.
"""
from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from she_bench.config import ConfigError
from she_bench.locks import file_lock
from she_bench.methods import METHODS
from she_bench.methods.common import (
    Context,
    JsonlLog,
    config_hash,
    in_stage,
    lora_config,
    train_once,
    trainer_args,
)
from she_bench.models import cache_dir, load_model, load_tokenizer, model_hash
from she_bench.reasoning.template import gold_rationale, render_prompt, with_rationale
from she_bench.runs import build_env, is_main_process, read_json, write_json


def sft_rows(examples, labels, tokenizer, prompt=None) -> list[dict]:
    """Prompt/completion rows of the gold rationales of `examples` that have one (the card's rationale_share)."""
    return [{"prompt": render_prompt(ex, labels, tokenizer, prompt), "completion": gold_rationale(ex)}
            for ex in with_rationale(examples)]


def run_sft(ctx: Context, init: Path, out_dir: Path, epochs: float, lr: float, rows=None, examples=None,
            **args) -> Path:
    """SFT from `init` into out_dir/final on prompt/completion rows (a callable giving them, built only if
    training is still to do; default: the gold rationales of `examples`, else of the train split, where the
    card makes them available); `args` override the trainer's (batch size, max_steps)."""
    cfg = ctx.cfg

    def build():
        tokenizer = load_tokenizer(init)
        tokenizer.padding_side = "right"
        targs = trainer_args(SFTConfig, cfg, out_dir, **{
            "num_train_epochs": epochs, "learning_rate": lr, "per_device_train_batch_size": cfg.warm_start.batch_size,
            "max_length": cfg.warm_start.max_length, "lr_scheduler_type": "cosine", "warmup_steps": 10,
            "completion_only_loss": True, **args})
        data = (rows() if rows is not None
                else sft_rows(examples if examples is not None else ctx.train_examples, ctx.bench.labels, tokenizer,
                              cfg.prompt))
        if not data:
            raise ConfigError(f"{ctx.stage}: no SFT row to train on (no train pair in reach has a gold rationale: "
                              f"rationale_share {ctx.bench.card.rationale_share:g})")
        data = Dataset.from_list(data)
        return SFTTrainer(model=load_model(init), args=targs, train_dataset=data,
                          processing_class=tokenizer, peft_config=lora_config(cfg), callbacks=[JsonlLog(ctx)])

    return train_once(out_dir, build, ctx)


def warm_start(ctx: Context) -> Path:
    """The shared warm start (cached); with warm_start.epochs 0, the base model itself (zero-shot rows).

    The cache key covers everything that changes the trained model: the base model, the very SFT rows it
    trains on (so the template, the prompt options, the train pool and the rationale share are all in it),
    the warm-start config, LoRA and the seed."""
    cfg = ctx.cfg
    if cfg.warm_start.epochs == 0:
        return ctx.base_model
    out_dir, rows = warm_start_dir(ctx)
    with in_stage(ctx, "warm_start"), file_lock(out_dir, collective=True):
        built_before = (out_dir / "final").is_dir()
        final = run_sft(ctx, ctx.base_model, out_dir, cfg.warm_start.epochs, cfg.warm_start.lr, rows=lambda: rows,
                        seed=cfg.seed, data_seed=cfg.seed)  # the warm start follows the run's seed, never rl.seed
        if is_main_process() and not (built_before and (out_dir / BUILD_FILE).is_file()):
            # the build: its weights' hash and the arithmetic that made them (unknown for one trained before this
            # record)
            write_json(out_dir / BUILD_FILE, {"weights_hash": model_hash(final),
                                              "env": None if built_before else build_env()})
        return final


BUILD_FILE = "build.json"


def warm_start_build(final: Path) -> dict:
    """A cached warm start's build record: {weights_hash, env} (env None where it was trained before builds were
    recorded); the hash is recomputed, so a record that does not match the weights is never trusted."""
    record = read_json(final.parent / BUILD_FILE) or {}
    h = model_hash(final)
    return {"weights_hash": h, "env": record.get("env") if record.get("weights_hash") == h else None}


def warm_starts_by_hash() -> dict[str, Path]:
    """Every cached warm start on this machine, by its weights' hash (as its build record gives it): the builds at
    hand, from which a cell of runs can be finished on the build it started on."""
    out = {}
    for record in sorted((cache_dir() / "warm_start").glob(f"*/{BUILD_FILE}")):
        h = (read_json(record) or {}).get("weights_hash")
        if isinstance(h, str) and (record.parent / "final").is_dir():
            out.setdefault(h, record.parent / "final")
    return out


def warm_start_dir(ctx: Context) -> tuple[Path, list[dict]]:
    """The warm start's cache folder, keyed by everything that decides it, and the rows it trains on."""
    cfg = ctx.cfg
    rows = sft_rows(ctx.train_examples, ctx.bench.labels, load_tokenizer(ctx.base_model), cfg.prompt)
    key = config_hash(model_hash(ctx.base_model), config_hash(rows), cfg.warm_start, cfg.seed,
                      cfg.train.lora and [cfg.train.lora_r, cfg.train.lora_alpha, cfg.train.lora_target])
    return cache_dir() / "warm_start" / f"{ctx.bench.name}-{Path(cfg.model).name}-{key}", rows


@METHODS.register("sft")
def train(ctx: Context, init: Path) -> Path:
    return run_sft(ctx, init, ctx.checkpoints, ctx.cfg.train.sft_epochs, ctx.cfg.warm_start.lr)


@METHODS.register("sft-matched")
def train_matched(ctx: Context, init: Path) -> Path:
    """SFT on gold rationales with the RL recipes' budget: their prompts (tail prompts weighted alike),
    train.prompts_per_step of them per step, train.max_steps optimizer steps, at train.lr."""
    from she_bench.methods.grpo import rl_examples

    cfg = ctx.cfg
    examples = rl_examples(ctx)
    rows = None
    if cfg.train.sft_targets == "oracle":  # the positive control: clean gold chains of every RL prompt
        tokenizer = load_tokenizer(init)
        rows = lambda: [{"prompt": render_prompt(ex, ctx.bench.labels, tokenizer, cfg.prompt),  # noqa: E731
                         "completion": gold_rationale(ex, withheld_ok=True, clean=True)} for ex in examples]
    return run_sft(ctx, init, ctx.checkpoints, 1.0, cfg.train.lr, rows=rows, examples=examples,
                   per_device_train_batch_size=cfg.train.prompts_per_step, max_steps=cfg.train.max_steps)


def rft_targets(examples, samples: list[list[dict]]) -> list[tuple]:
    """(example, completion) for each distinct format-valid sample with the gold label: RFT's SFT targets."""
    out, seen = [], set()
    for ex, group in zip(examples, samples):
        for smp in group:
            if smp["format_valid"] and smp["pred"] == ex.label and (ex.id, smp["text"]) not in seen:
                seen.add((ex.id, smp["text"]))
                out.append((ex, smp["text"]))
    return out


@METHODS.register("rft")
def train_rft(ctx: Context, init: Path) -> Path:
    """Rejection-sampling fine-tuning: SFT on the warm start's own samples whose label is right (format-valid), with the
    labels RL uses and the RL recipes' budget (train.prompts_per_step rows per step, train.max_steps steps, train.lr).
    Its prompts are the first max_steps x prompts_per_step RL prompts; train.rft_samples samples each."""
    from she_bench.methods.grpo import rl_examples
    from she_bench.methods.rollouts import sample_rollouts

    cfg = ctx.cfg
    examples = rl_examples(ctx)[: cfg.train.max_steps * cfg.train.prompts_per_step]
    tokenizer = load_tokenizer(init)

    def rows() -> list[dict]:
        samples = sample_rollouts(ctx, init, examples, cfg.train.rft_samples, "rft rollouts")
        out = [{"prompt": render_prompt(ex, ctx.bench.labels, tokenizer, cfg.prompt), "completion": text}
               for ex, text in rft_targets(examples, samples)]
        ctx.run.update(rft_rows=len(out), rft_prompts=len(examples))
        if not out:
            raise ConfigError(f"{ctx.stage}: RFT found no sample to train on: none of {len(examples)} prompts x "
                              f"{cfg.train.rft_samples} warm-start samples is format-valid with the gold label")
        return out

    return run_sft(ctx, init, ctx.checkpoints, 1.0, cfg.train.lr, rows=rows,
                   per_device_train_batch_size=cfg.train.prompts_per_step, max_steps=cfg.train.max_steps)
