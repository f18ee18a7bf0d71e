"""Seconds per optimizer step: SRPO against GRPO, measured side by side in one process.

Variants, all built by `she_bench.methods.grpo.build_trainer` from the same context (recipe, model,
data, budget: train.prompts_per_step x rl.group_size rollouts, rl.max_completion_length) and the same
cached warm start:

  srpo       SRPOTrainer (oracle GRM, verifier_first, the srpo recipe's defaults)
  grpo       SheGRPOTrainer (what `--method grpo` trains)
  trl        TRL's own GRPOTrainer, unmodified (a shim only drops build_trainer's ctx/outcome kwargs)
  srpo_ref   (opt-in) SRPO with token_step_index swapped for the original prefix-decoding version
             (token_span.reference_token_step_index) while it runs: the before/after of the fix

--mode step (default): per round, every variant does one full optimizer step on the *same* batch
(same prompts, same torch seed, weights reset to the warm start before each step, so all variants
sample identical completions): trainer.training_step (generate + score + advantages + loss + backward)
+ optimizer.step + zero_grad. Variant order rotates each round (A B C, B C A, ...). Reported: median
s/step per variant and the median of per-round paired ratios.

--mode train: alternating short `trainer.train()` calls of --chunk steps each (weights evolve, the
sampler restarts each call); step time = on_step_begin -> on_step_end of a callback (includes the
optimizer step and the run's JSONL logging callback).

Target: srpo / grpo <= 1.10.

    python benchmarks/perf/srpo_vs_grpo.py                 # ~2-3 min on a loaded 2-core CPU
    python benchmarks/perf/srpo_vs_grpo.py --rounds 20     # longer, tighter medians
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (sets thread counts and env before torch work)
import torch
from _common import iqr, machine, make_context, median
from transformers import TrainerCallback


def build_variants(ctx, init, names):
    from trl import GRPOTrainer

    from she_bench.methods.grpo import SheGRPOTrainer, build_trainer
    from she_bench.methods.srpo import SRPOTrainer, build_grm

    class PlainTRL(GRPOTrainer):
        """TRL's GRPOTrainer as is; accepts and ignores build_trainer's she-bench kwargs."""

        def __init__(self, *args, ctx=None, outcome=None, **kwargs):
            super().__init__(*args, **kwargs)

    out = {}
    for name in names:
        vctx = dataclasses.replace(ctx, checkpoint_dir=ctx.run.path / f"perf-{name}")
        if name in ("srpo", "srpo_ref"):
            grm = None if ctx.cfg.reward.mixing == "verifier_only" else build_grm(ctx, init)
            out[name] = build_trainer(vctx, init, SRPOTrainer, grm=grm)
        elif name == "grpo":
            out[name] = build_trainer(vctx, init, SheGRPOTrainer)
        elif name == "trl":
            out[name] = build_trainer(vctx, init, PlainTRL)
        else:
            raise SystemExit(f"unknown variant {name}")
    return out


@contextlib.contextmanager
def variant_patch(name):
    """srpo_ref runs with the original token_step_index; every other variant runs the package as is."""
    if name != "srpo_ref":
        yield
        return
    from token_span import reference_token_step_index

    from she_bench.methods import srpo

    saved, srpo.token_step_index = srpo.token_step_index, reference_token_step_index
    try:
        yield
    finally:
        srpo.token_step_index = saved


def run_step_mode(trainers, ctx, rounds, warmup):
    cfg = ctx.cfg
    names = list(trainers)
    g, p = cfg.rl.group_size, cfg.train.prompts_per_step
    snapshots = {}
    for name, tr in trainers.items():
        tr.model.train()
        tr.current_gradient_accumulation_steps = 1
        tr.create_optimizer()
        snapshots[name] = copy.deepcopy(tr.model.state_dict())
    data = trainers[names[0]].train_dataset
    times = {n: [] for n in names}
    lengths = {n: [] for n in names}
    for r in range(warmup + rounds):
        rows = [data[(r * p + i) % len(data)] for i in range(p)]
        batch = [row for row in rows for _ in range(g)]  # TRL's RepeatSampler: each prompt g times in a row
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            tr = trainers[name]
            tr.model.load_state_dict(snapshots[name])
            tr._buffered_inputs = None
            torch.manual_seed(1000 + r)
            with variant_patch(name):
                t0 = time.perf_counter()
                tr.training_step(tr.model, batch, None)
                tr.optimizer.step()
                tr.optimizer.zero_grad(set_to_none=True)
                dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
                lengths[name].append(tr._metrics["train"]["completions/mean_length"][-1])
            print(f"round {r}{' (warmup)' if r < warmup else ''} {name:8s} {dt:7.3f} s", flush=True)
    return times, lengths


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self.t0 = [], None

    def on_step_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.t0)


def run_train_mode(trainers, rounds, chunk, warmup):
    names = list(trainers)
    times = {n: [] for n in names}
    lengths = {n: [] for n in names}
    timers = {}
    for name, tr in trainers.items():
        timers[name] = StepTimer()
        tr.add_callback(timers[name])
        tr.args.max_steps = chunk
        tr.args.save_strategy = "no"
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            tr, timer = trainers[name], timers[name]
            timer.times = []
            torch.manual_seed(1000 + r)
            with variant_patch(name):
                tr.train()
            if r >= warmup:
                times[name] += timer.times
                lengths[name] += [h["completions/mean_length"] for h in tr.state.log_history if "completions/mean_length" in h]
            print(f"round {r}{' (warmup)' if r < warmup else ''} {name:5s} " + " ".join(f"{t:.3f}" for t in timer.times), flush=True)
    return times, lengths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy-1m")
    ap.add_argument("--benchmark", default="toyshop")
    ap.add_argument("--variants", default="srpo,grpo,trl", help="comma list of srpo, grpo, trl, srpo_ref")
    ap.add_argument("--mode", choices=["step", "train"], default="step")
    ap.add_argument("--rounds", type=int, default=10, help="measured rounds (each variant once per round)")
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    ap.add_argument("--chunk", type=int, default=2, help="--mode train: steps per trainer.train() call")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("overrides", nargs="*", help="config overrides (key=value), applied to every variant")
    args = ap.parse_args(argv)

    print(machine())
    ctx, init = make_context("srpo", args.model, args.benchmark, args.overrides)
    cfg = ctx.cfg
    print(f"warm start {init}; {cfg.train.prompts_per_step} prompts x {cfg.rl.group_size} rollouts, "
          f"max_completion_length={cfg.rl.max_completion_length}, grm={cfg.reward.grm}, mixing={cfg.reward.mixing}")
    names = args.variants.split(",")
    trainers = build_variants(ctx, init, names)
    if args.mode == "step":
        times, lengths = run_step_mode(trainers, ctx, args.rounds, args.warmup)
    else:
        times, lengths = run_train_mode(trainers, args.rounds, args.chunk, args.warmup)

    print(f"\nmode={args.mode} model={args.model} benchmark={args.benchmark} rounds={args.rounds} (+{args.warmup} warmup)")
    print(f"{'variant':9s} {'n':>3s} {'median s/step':>14s} {'IQR':>17s} {'mean len':>9s}")
    res = {"mode": args.mode, "model": args.model, "rounds": args.rounds, "machine": machine(), "variants": {}}
    for n in names:
        lo, hi = iqr(times[n])
        print(f"{n:9s} {len(times[n]):3d} {median(times[n]):14.3f} {lo:8.3f}-{hi:8.3f} {median(lengths[n]):9.1f}")
        res["variants"][n] = {"median_s": median(times[n]), "iqr": [lo, hi], "times": times[n],
                              "median_completion_length": median(lengths[n])}
    pairs = [(a, b) for a, b in (("srpo", "grpo"), ("srpo", "trl"), ("grpo", "trl"), ("srpo_ref", "grpo"), ("srpo_ref", "srpo")) if a in names and b in names]
    res["ratios"] = {}
    for a, b in pairs:
        ratio_of_medians = median(times[a]) / median(times[b])
        paired = median([x / y for x, y in zip(times[a], times[b])]) if args.mode == "step" else float("nan")
        res["ratios"][f"{a}/{b}"] = {"ratio_of_medians": ratio_of_medians, "median_paired_ratio": paired}
        print(f"ratio {a}/{b}: {ratio_of_medians:.3f}x (ratio of medians)"
              + (f", {paired:.3f}x (median of per-round paired ratios)" if args.mode == "step" else ""))
    if "srpo" in names and "grpo" in names:
        r = res["ratios"]["srpo/grpo"]
        verdict = "MET" if max(r["ratio_of_medians"], r["median_paired_ratio"] if args.mode == "step" else 0) <= 1.10 else "NOT MET"
        print(f"target srpo/grpo <= 1.10x: {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
