"""Where an SRPO optimizer step goes: the share spent in she-bench's reward and advantage code.

Runs a real `trainer.train()` of SRPOTrainer (srpo recipe: oracle GRM, verifier_first) for --steps
optimizer steps from the cached warm start, with the package's functions wrapped in
time.perf_counter timers by monkeypatching (the package is not edited). Timers nest: each piece is
reported as *exclusive* time (a wrapped callee's time is taken out of its wrapped caller's), so the
pieces add up without double counting.

Pieces (she-bench code; the target is their sum < 5% of the step with the oracle GRM):
  parse       reasoning.parser.parse, called (through rewards.verifier.check) on every completion
  verify      the offline verifier: verifier.verify_steps + grpo.shaped_outcome (called by the outcome reward)
  grm         the GRM's score() (oracle: verify + seeded flips)
  token_span  rewards.step_advantages.token_step_index (char spans -> token step index)
  advantages  step_terms, token_advantages, hybrid_step_rewards, the rest of step_rewards /
              shape_advantages / _group_filter / _last_rewards and SheGRPOTrainer's glue around
              TRL's _generate_and_score_completions (clamp, filter)
  logging     SheGRPOTrainer._log + the JsonlLog callback (train_log.jsonl)
Reported for context (not she-bench overhead): TRL's generate+score (minus the pieces above), the
rest of the step (loss, backward, optimizer, TRL's log), and the whole step (on_step_begin to the next
on_step_begin, so logging after on_step_end is included). The first --warmup steps are dropped.
Checkpoint saving is switched off (save_strategy=no) so a short run does not include a save.

    python benchmarks/perf/step_overhead.py                   # ~1-2 min on a loaded 2-core CPU
    python benchmarks/perf/step_overhead.py --steps 30 --profile
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (sets thread counts and env before torch work)
from _common import machine, make_context, median
from transformers import TrainerCallback

OVERHEAD = ("parse", "verify", "grm", "token_span", "advantages", "logging")


class Clock:
    """Exclusive wall time per category, bucketed per optimizer step."""

    def __init__(self):
        self.stack: list[list] = []  # [category, start, child time]
        self.step = collections.Counter()
        self.steps: list[tuple[float, collections.Counter]] = []
        self.begin = None

    def wrap(self, category, fn):
        @functools.wraps(fn)
        def timed(*a, **kw):
            frame = [category, time.perf_counter(), 0.0]
            self.stack.append(frame)
            try:
                return fn(*a, **kw)
            finally:
                self.stack.pop()
                total = time.perf_counter() - frame[1]
                self.step[category] += total - frame[2]
                if self.stack:
                    self.stack[-1][2] += total
        timed.__wrapped_by_perf__ = True
        return timed

    def new_step(self):
        now = time.perf_counter()
        if self.begin is not None:
            self.steps.append((now - self.begin, self.step))
        self.begin, self.step = now, collections.Counter()


class StepClock(TrainerCallback):
    def __init__(self, clock):
        self.clock = clock

    def on_step_begin(self, args, state, control, **kw):
        self.clock.new_step()

    def on_train_end(self, args, state, control, **kw):
        self.clock.new_step()


def patch(clock: Clock, reference_token_span: bool = False):
    from trl import GRPOTrainer

    from she_bench.methods import grpo, srpo
    from she_bench.rewards import verifier
    from she_bench.methods.common import JsonlLog
    from she_bench.rewards.grm import GRMS

    def on(obj, name, category):
        setattr(obj, name, clock.wrap(category, getattr(obj, name)))

    on(verifier, "parse", "parse")
    on(verifier, "verify_steps", "verify")
    on(grpo, "shaped_outcome", "verify")
    for kind in ("oracle", "generative", "judge"):
        on(GRMS.get(kind), "score", "grm")
    if reference_token_span:  # the original prefix-decoding implementation, for a before/after
        from token_span import reference_token_step_index

        srpo.token_step_index = reference_token_step_index
    on(srpo, "token_step_index", "token_span")
    for name in ("step_terms", "token_advantages", "hybrid_step_rewards"):
        on(srpo, name, "advantages")
    for name in ("step_rewards", "shape_advantages"):
        on(srpo.SRPOTrainer, name, "advantages")
    for name in ("_group_filter", "_last_rewards", "_generate_and_score_completions"):
        on(grpo.SheGRPOTrainer, name, "advantages")
    on(grpo.SheGRPOTrainer, "_log", "logging")
    on(JsonlLog, "on_log", "logging")
    on(GRPOTrainer, "_generate_and_score_completions", "trl_generate_score")
    on(GRPOTrainer, "log", "trl_log")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy-1m")
    ap.add_argument("--benchmark", default="toyshop")
    ap.add_argument("--steps", type=int, default=22, help="optimizer steps (incl. warmup)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="also cProfile the run and print she_bench's hotspots")
    ap.add_argument("--reference-token-span", action="store_true",
                    help="use the original prefix-decoding token_step_index (token_span.py) instead of the package's")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = ap.parse_args(argv)

    print(machine())
    ctx, init = make_context("srpo", args.model, args.benchmark, [f"train.max_steps={args.steps}", *args.overrides])
    from she_bench.methods.grpo import build_trainer
    from she_bench.methods.srpo import SRPOTrainer, build_grm

    clock = Clock()
    patch(clock, args.reference_token_span)
    grm = None if ctx.cfg.reward.mixing == "verifier_only" else build_grm(ctx, init)
    trainer = build_trainer(ctx, init, SRPOTrainer, grm=grm)
    trainer.args.save_strategy = "no"
    trainer.add_callback(StepClock(clock))
    cfg = ctx.cfg
    print(f"token_step_index: {'original (reference copy)' if args.reference_token_span else 'package'}")
    print(f"SRPO, {args.model}/{args.benchmark}, grm={cfg.reward.grm}, mixing={cfg.reward.mixing}, "
          f"{cfg.train.prompts_per_step}x{cfg.rl.group_size} rollouts, max_completion_length={cfg.rl.max_completion_length}")
    prof = None
    if args.profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    trainer.train()
    if prof:
        prof.disable()

    steps = clock.steps[args.warmup:]
    total = sum(t for t, _ in steps)
    sums = collections.Counter()
    for _, c in steps:
        sums.update(c)
    n = len(steps)
    print(f"\n{n} measured steps (first {args.warmup} dropped); median step {median([t for t, _ in steps]):.3f} s, "
          f"mean {total / max(1, n):.3f} s")
    print(f"{'piece':22s} {'ms/step':>9s} {'share':>7s}")
    res = {"machine": machine(), "steps": n, "median_step_s": median([t for t, _ in steps]),
           "mean_step_s": total / max(1, n), "pieces": {}}
    overhead = 0.0
    for cat in OVERHEAD:
        share = sums[cat] / total
        overhead += share
        print(f"{cat:22s} {1000 * sums[cat] / n:9.1f} {100 * share:6.2f}%")
        res["pieces"][cat] = {"ms_per_step": 1000 * sums[cat] / n, "share": share}
    print(f"{'= she-bench overhead':22s} {1000 * overhead * total / n:9.1f} {100 * overhead:6.2f}%")
    rest = total - sum(sums.values())
    for cat, val in (("trl_generate_score", sums["trl_generate_score"]), ("trl_log", sums["trl_log"]),
                     ("loss+backward+optim", rest)):
        print(f"{'(' + cat + ')':22s} {1000 * val / n:9.1f} {100 * val / total:6.2f}%")
        res["pieces"][cat] = {"ms_per_step": 1000 * val / n, "share": val / total}
    res["overhead_share"] = overhead
    print(f"target she-bench overhead < 5%: {'MET' if overhead < 0.05 else 'NOT MET'} ({100 * overhead:.2f}%)")
    if prof:
        import io
        import pstats

        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(r"she_bench|step_advantages|tokenization", 25)
        print(s.getvalue())
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
