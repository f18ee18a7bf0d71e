"""The run lifecycle behind `she-bench eval` and `she-bench run`: open the run directory, build the
model, warm start, train, evaluate, measure the GRM, write metrics.json once, finish.

    result = run_method(cfg, command)      # warm start (cached) -> method -> evaluation
    result = evaluate_model(cfg, command)  # evaluation only

A finished run is not redone (its metrics are read back); an unfinished one resumes. One owner at a
time: the process (or data-parallel launch) that works in a run directory holds its lock, and a second
one for the same run waits, then finds it done (or resumes it, if the first stopped short).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from she_bench.config import Config, check_card
from she_bench.data.cards import Benchmark, load_benchmark
from she_bench.locks import file_lock
from she_bench.runs import Run, is_main_process, process_state, read_jsonl, run_budget, write_json


@dataclass
class Result:
    path: Path
    metrics: dict
    already_done: bool = False


def toy_corpus(bench: Benchmark) -> list[str]:
    """Text a toy tokenizer is trained on: the train split's prompts and gold rationales, every one of them
    whatever the card's rationale_share (a tokenizer learns no weights), so every share starts from the same
    base model."""
    from she_bench.reasoning.template import gold_rationale, render_prompt

    return [render_prompt(ex, bench.labels) + gold_rationale(ex, withheld_ok=True) for ex in bench.splits["train"]]


def open_benchmark(cfg: Config) -> Benchmark:
    """The run's benchmark, with the config's card-dependent rules checked against it."""
    bench = load_benchmark(cfg.benchmark, cfg.data_dir, cfg.card)
    check_card(cfg, bench)
    return bench


def device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _finished(run: Run) -> Result | None:
    """A run already done, read back (None on data-parallel replicas)."""
    if not is_main_process():
        return None
    return Result(run.path, json.loads((run.path / "metrics.json").read_text()), already_done=True)


def _start(cfg: Config, command: list[str], bench: Benchmark, run: Run, model_key: str, **provenance) -> Path:
    """Start the run; returns the model folder, recorded in the manifest under `model_key` (and `<model_key>_hash`)."""
    from she_bench.models import model_hash, resolve_model

    model = resolve_model(cfg.model, toy_corpus(bench), cfg.seed)
    run.start(data_hash=bench.data_hash(),
              **{model_key: str(model), f"{model_key.removesuffix('_path')}_hash": model_hash(model)},
              engine=cfg.engine, device=device(), command=command, **provenance)
    return model


def evaluate_model(cfg: Config, command: list[str]) -> Result:
    from she_bench.evaluation.evaluate import evaluate

    bench = open_benchmark(cfg)
    run = Run(cfg, bench.name)
    with file_lock(run.path / "run", collective=True):  # one owner; a second process waits, then finds the run done
        if run.is_done():
            return _finished(run)
        model_path = _start(cfg, command, bench, run, "model_path")
        t0 = time.time()
        metrics = evaluate(run, bench, model_path)
        write_json(run.path / "metrics.json", metrics)
        run.update(eval_seconds=round(time.time() - t0, 2))
        run.finish()
        return Result(run.path, metrics)


def run_method(cfg: Config, command: list[str], expect_warm_start: str | None = None,
               experiments: list[dict] | None = None) -> Result | None:
    """Warm start, train with cfg.method, evaluate. None on data-parallel replicas (rank 0 evaluates).

    `expect_warm_start`: the warm start's weights hash this run must start from (a cell finished on its build);
    `experiments`: the claim experiments it is run for ({file, analysis_hash}), recorded in its manifest."""
    from she_bench.evaluation.entropy import training_entropy
    from she_bench.evaluation.evaluate import evaluate
    from she_bench.methods import get_method
    from she_bench.methods.common import Context
    from she_bench.methods.sft import warm_start, warm_start_dir
    from she_bench.models import model_hash

    process_state()  # joins the process group when launched data-parallel
    train = get_method(cfg.method)
    if getattr(train, "classic", False):
        return run_classic(cfg, command, train)
    if cfg.prompt.style != "steps" and (cfg.method != "none" or cfg.warm_start.epochs != 0):
        from she_bench.config import ConfigError

        raise ConfigError(f"prompt.style={cfg.prompt.style} is for evaluating untrained models (method none with "
                          "warm_start.epochs=0): training methods learn the five-step format")
    bench = open_benchmark(cfg)
    run = Run(cfg, bench.name)
    # the launch owns the run; a second one waits, then finds it done
    with file_lock(run.path / "run", collective=True):
        if run.is_done():
            return _finished(run)
        base = _start(cfg, command, bench, run, "base_model", experiments=experiments or [])
        ctx = Context(cfg=cfg, bench=bench, run=run, base_model=base)
        t0 = time.time()
        if expect_warm_start and cfg.warm_start.epochs and not (warm_start_dir(ctx)[0] / "final").is_dir():
            from she_bench.config import ConfigError

            raise ConfigError(f"--warm-start-hash {expect_warm_start[:12]}: no warm start of this run's key is at hand "
                              "here: run the whole cell again on one build")
        init = ctx.warm_start = warm_start(ctx)
        built = build_record(base, init, expect_warm_start, run.manifest().get("base_model_hash"))
        run.update(warm_start=str(init), **built, warm_start_seconds=round(time.time() - t0, 1))
        t1 = time.time()
        final = train(ctx, init)
        if not is_main_process():
            return None
        train_seconds = round(time.time() - t1, 1)
        run.update(final_model=str(final), final_model_hash=model_hash(final), train_seconds=train_seconds)
        t2 = time.time()
        metrics = evaluate(run, bench, final, reference=None if Path(final) == Path(init) else Path(init))
        log = read_jsonl(run.path / "train_log.jsonl")
        metrics["training_entropy"] = training_entropy(log)
        grm = grm_quality(ctx, init)
        if grm is not None:
            metrics["grm_agreement"] = grm
            metrics["overall"]["step_accuracy_grm"] = grm["step_accuracy_grm"]
        seconds = {"train_seconds": train_seconds, "eval_seconds": round(time.time() - t2, 1),
                   "total_seconds": round(time.time() - t0, 1)}
        metrics["budget"] = run_budget(log, seconds)
        write_json(run.path / "metrics.json", metrics)
        run.update(budget=metrics["budget"], **seconds)
        run.finish()
        return Result(run.path, metrics)


def build_record(base: Path, init: Path, want: str | None = None, base_hash: str | None = None) -> dict:
    """The manifest's record of the weights a run started from: `warm_start_hash` and `build` (the warm start's
    weights hash, the base model's, and the arithmetic the warm start was trained under). Two runs are paired only
    on one build. With `want` set (ablate finishing a cell on its build), another build is refused. `base_hash`: the
    base model's hash where the manifest already has it."""
    from she_bench.config import ConfigError
    from she_bench.methods.sft import warm_start_build
    from she_bench.models import model_hash

    base_hash = base_hash or model_hash(base)
    if Path(init) == Path(base):  # no warm start: the base model is the build
        build = {"weights_hash": base_hash, "env": None}
    else:
        build = warm_start_build(Path(init))
    if want and build["weights_hash"] != want:
        raise ConfigError(f"warm start {init}: its weights' hash {build['weights_hash'][:12]} is not the build "
                          f"{want[:12]} this run was asked to start from (--warm-start-hash): run the whole cell "
                          "again on one build")
    return {"warm_start_hash": build["weights_hash"],
            "build": {"id": build["weights_hash"][:12], "warm_start_hash": build["weights_hash"],
                      "base_model_hash": base_hash, "env": build["env"]}}


def run_classic(cfg: Config, command: list[str], predict) -> Result:
    """A classic baseline: fit on the train split, predict the evaluated split, score the labels."""
    from she_bench.evaluation.evaluate import evaluate_labels
    from she_bench.methods.common import Context

    bench = open_benchmark(cfg)
    run = Run(cfg, bench.name)
    with file_lock(run.path / "run", collective=True):
        if run.is_done():
            return _finished(run)
        run.start(data_hash=bench.data_hash(), model=None, engine=None, device="cpu", command=command)
        t0 = time.time()
        predicted = predict(Context(cfg=cfg, bench=bench, run=run, base_model=None))
        train_seconds = round(time.time() - t0, 2)
        metrics = evaluate_labels(run, bench, predicted)
        seconds = {"train_seconds": train_seconds, "eval_seconds": round(time.time() - t0 - train_seconds, 2),
                   "total_seconds": round(time.time() - t0, 2)}
        metrics["budget"] = {"optimizer_steps": None, "prompts_seen": len(bench.splits["train"]), "tokens_generated": 0,
                             "tokens_trained": 0, "grm_steps": 0, **seconds}
        write_json(run.path / "metrics.json", metrics)
        run.update(budget=metrics["budget"], **seconds)
        run.finish()
        return Result(run.path, metrics)


def grm_quality(ctx, init: Path) -> dict | None:
    """How well the run's GRM judged the final policy's own outputs (None: no GRM in the reward)."""
    from she_bench.evaluation.grm_quality import grm_agreement
    from she_bench.methods.srpo import build_grm
    from she_bench.rewards.grm import grm_label, trained_record, uses_grm

    cfg = ctx.cfg
    if not uses_grm(cfg.method, cfg.reward.mixing):
        return None
    r = cfg.reward
    grm = build_grm(ctx, init, seed_offset=1)
    examples = {ex.id: ex for ex in ctx.bench.splits[cfg.eval.split]}
    out = grm_agreement(grm, examples, read_jsonl(ctx.run.path / "predictions.jsonl"), ctx.bench.labels,
                        grm_label(r.grm, r.grm_error_rate, r.grm_model))
    record = trained_record(grm.scorer.model_path) if hasattr(grm, "scorer") else None
    if record is not None:  # a GRM trained here: what it was trained on, its threshold, its held-out quality
        out["heldout"] = record
    return out
