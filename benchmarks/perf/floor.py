"""Each step against its floor: the machine's peak arithmetic and memory bandwidth, and what the SFT step, the RL
step (generation, scoring, update, each apart) and evaluation achieve against the FLOPs of their live tokens.

    python benchmarks/perf/floor.py [--threads 1 2] [--dtypes fp32 bf16] [--steps 6] [--json FILE] [overrides ...]

For each thread count and dtype, in one process:

* peak: the best median rate of matmuls at compute-bound shapes (and the toy model's own shapes), and the bandwidth
  of a large copy;
* SFT step: a warm-start step (32 rows, prompt + gold rationale, completion-only loss) forward, backward and AdamW;
* RL step: real SRPOTrainer steps from the cached warm start, each split into generation (the policy's `generate`),
  scoring (the rest of TRL's generate-and-score: rewards, advantages, the reference model's forward) and update
  (loss, backward, optimizer);
* evaluation: greedy generation of 256 test prompts.

A step's FLOP floor is the FLOPs of its live tokens (no padding, nothing after EOS) divided by the peak: forward
2 x (matmul parameters) per token plus causal attention (4 x layers x hidden x context), backward twice the forward.
Decoding also gets a memory floor: each decode step reads the weights and the KV cache once. Each step is reported
as achieved FLOP/s and as a multiple of its floor (max of the two floors where both apply). bf16 runs the model
under CPU autocast (bf16 matmuls, fp32 weights), the precision a bf16 path would use.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401,E402  (thread and env settings before torch work)
import torch  # noqa: E402
from _common import machine, make_context  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def timed(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return med(out)


def peak(dtype, hidden: int) -> dict:
    """Best median matmul rate (FLOP/s) over compute-bound and model-shaped matmuls, and copy bandwidth (bytes/s)."""
    rates = {}
    for m, k, n in ((1024, 1024, 1024), (2048, 2048, 2048), (4096, hidden, 4 * hidden), (4096, 4 * hidden, hidden)):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.matmul(a, b)
        rates[f"{m}x{k}x{n}"] = 2 * m * k * n / timed(lambda: torch.matmul(a, b), 7)
    x = torch.empty(64 * 1024 * 1024, dtype=torch.float32)
    y = torch.empty_like(x)
    bw = 2 * x.numel() * 4 / timed(lambda: y.copy_(x), 5)
    return {"flops": max(rates.values()), "by_shape": rates, "bandwidth": bw}


class Shape:
    """FLOPs of a Llama-style model per token, from its config."""

    def __init__(self, cfg):
        h, f, v, layers = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
        self.layers, self.hidden = layers, h
        self.matmul_params = layers * (4 * h * h + 3 * h * f) + v * h  # attention, MLP, LM head

    def forward(self, lengths) -> float:
        """Forward FLOPs of whole sequences of these live lengths (causal attention)."""
        return sum(2 * self.matmul_params * t + 4 * self.layers * self.hidden * t * (t + 1) / 2 for t in lengths)

    def decode(self, prompt: int, new: int) -> float:
        """FLOPs of generating `new` tokens after a `prompt`-token prefill, with a KV cache."""
        return self.forward([prompt]) + sum(2 * self.matmul_params + 4 * self.layers * self.hidden * (prompt + i)
                                            for i in range(new))


def autocast(dtype):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else contextlib.nullcontext()


def sft_step(ctx, init, dtype, steps: int, pk: dict) -> dict:
    from she_bench.methods.sft import sft_rows
    from she_bench.models import load_model, load_tokenizer

    tok = load_tokenizer(init)
    model = load_model(init).train()
    rows = sft_rows(ctx.train_examples, ctx.bench.labels, tok, ctx.cfg.prompt)[:32]
    enc = [tok(r["prompt"] + r["completion"], add_special_tokens=False)["input_ids"][:ctx.cfg.warm_start.max_length]
           for r in rows]
    starts = [len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) for r in rows]
    longest = max(map(len, enc))
    ids = torch.full((len(enc), longest), tok.pad_token_id)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for i, (seq, s) in enumerate(zip(enc, starts)):
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
        labels[i, s:len(seq)] = ids[i, s:len(seq)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast(dtype):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    step()
    seconds = timed(step, steps)
    flops = 3 * Shape(model.config).forward([len(s) for s in enc])
    return {"seconds": seconds, "flops": flops, "live_tokens": sum(map(len, enc)), "padded_tokens": ids.numel(),
            "achieved": flops / seconds, "floor_seconds": flops / pk["flops"], "multiple": seconds * pk["flops"] / flops}


def generation(model, tok, prompts, max_new: int, temperature: float, pk: dict) -> dict:
    from she_bench.engines.hf import TransformersEngine

    engine = TransformersEngine(None, model=model, tokenizer=tok)
    t = time.perf_counter()
    gens = engine.generate(prompts, max_new_tokens=max_new, batch_size=len(prompts), temperature=temperature,
                           progress=False)
    seconds = time.perf_counter() - t
    shape = Shape(model.config)
    plens = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    flops = sum(shape.decode(p, g.n_tokens) for p, g in zip(plens, gens))
    # memory: each decode step (the batch in lockstep until its longest output ends) reads the weights and KV cache
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    steps = max(g.n_tokens for g in gens)
    kv = 2 * shape.layers * shape.hidden * 4 * len(prompts) * (max(plens) + steps / 2)
    mem_floor = steps * (weights + kv) / pk["bandwidth"]
    floor = max(flops / pk["flops"], mem_floor)
    return {"seconds": seconds, "flops": flops, "generated_tokens": sum(g.n_tokens for g in gens),
            "decode_steps": steps, "achieved": flops / seconds, "flop_floor_seconds": flops / pk["flops"],
            "memory_floor_seconds": mem_floor, "multiple": seconds / floor}


def rl_step(ctx, init, dtype, steps: int, pk: dict) -> dict:
    """Real SRPO steps; generation, scoring and update timed apart (exclusive wall time per step)."""
    from trl import GRPOTrainer
    from transformers import TrainerCallback

    from she_bench.methods.grpo import build_trainer
    from she_bench.methods.srpo import SRPOTrainer, build_grm

    spent = {"generate": [], "score": [], "step": []}
    live = {"prompt": [], "completion": []}
    trainer = build_trainer(ctx, init, SRPOTrainer, grm=build_grm(ctx, init))
    trainer.args.save_strategy = "no"
    trainer.args.max_steps = steps + 1
    model = trainer.model
    gen_fn, score_fn = model.generate, GRPOTrainer._generate_and_score_completions
    cur = {"gen": 0.0, "score": 0.0, "begin": None}

    @functools.wraps(gen_fn)
    def gen(*a, **kw):
        t = time.perf_counter()
        with autocast(dtype):
            out = gen_fn(*a, **kw)
        cur["gen"] += time.perf_counter() - t
        return out

    def score(self, *a, **kw):
        t = time.perf_counter()
        out = score_fn(self, *a, **kw)
        cur["score"] += time.perf_counter() - t
        mask = out["completion_mask"]
        live["completion"].append(int(mask.sum()))
        live["prompt"].append(int(out["prompt_mask"].sum()))
        return out

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            cur.update(gen=0.0, score=0.0, begin=time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            total = time.perf_counter() - cur["begin"]
            spent["generate"].append(cur["gen"])
            spent["score"].append(cur["score"] - cur["gen"])
            spent["step"].append(total)

    model.generate = gen
    GRPOTrainer._generate_and_score_completions = score
    trainer.add_callback(Clock())
    try:
        with autocast(dtype):
            trainer.train()
    finally:
        GRPOTrainer._generate_and_score_completions = score_fn
    shape = Shape(model.config)
    n = ctx.cfg.train.prompts_per_step * ctx.cfg.rl.group_size
    p_len, c_len = med(live["prompt"][1:]) / n, med(live["completion"][1:]) / n
    fwd = shape.forward([p_len + c_len] * n)
    gen_flops = n * shape.decode(int(p_len), int(c_len))
    out = {}
    for piece, flops in (("generate", gen_flops), ("score", fwd if ctx.cfg.rl.beta > 0 else 0.0),
                         ("update", 3 * fwd)):
        secs = med(spent["step"][1:]) - med(spent["generate"][1:]) - med(spent["score"][1:]) if piece == "update" \
            else med(spent[piece][1:])
        out[piece] = {"seconds": secs, "flops": flops, "achieved": flops / secs if secs > 0 else None,
                      "multiple": secs * pk["flops"] / flops if flops else None}
    total = med(spent["step"][1:])
    all_flops = gen_flops + 4 * fwd
    out["step"] = {"seconds": total, "flops": all_flops, "achieved": all_flops / total,
                   "multiple": total * pk["flops"] / all_flops, "completion_tokens": c_len * n, "prompt_tokens": p_len * n}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--json")
    ap.add_argument("overrides", nargs="*", help="config overrides of the srpo run (key=value)")
    args = ap.parse_args(argv)
    print(machine())
    ctx, init = make_context("srpo", overrides=args.overrides)
    from she_bench.evaluation.evaluate import prompts_for
    from she_bench.models import load_model, load_tokenizer

    tok = load_tokenizer(init)
    test = ctx.bench.splits["test"][:256]
    prompts = prompts_for(test, ctx.bench, ctx.cfg, tok)
    rl_prompts = prompts_for(ctx.train_examples[:8], ctx.bench, ctx.cfg, tok)
    rl_prompts = [p for p in rl_prompts for _ in range(ctx.cfg.rl.group_size)]
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.dtypes:
            dtype = DTYPES[name]
            model = load_model(init).eval()
            pk = peak(dtype, model.config.hidden_size)
            with autocast(dtype):
                gen = generation(model, tok, rl_prompts, ctx.cfg.rl.max_completion_length, ctx.cfg.rl.temperature, pk)
                ev = generation(model, tok, prompts, ctx.cfg.eval.max_new_tokens, 0.0, pk)
            row = {"threads": threads, "dtype": name, "peak": pk, "sft_step": sft_step(ctx, init, dtype, args.steps, pk),
                   "rl_generation_64": gen, "eval_256": ev, "rl_step": rl_step(ctx, init, dtype, args.steps, pk)}
            results.append(row)
            print(f"\nthreads {threads}, {name}: peak {pk['flops'] / 1e9:.0f} GFLOP/s, copy {pk['bandwidth'] / 1e9:.1f} GB/s")
            for label, r in (("SFT step (32 rows)", row["sft_step"]), ("generation (8x8, sampled)", gen),
                             ("evaluation (256, greedy)", ev), *[(f"RL {k}", v) for k, v in row["rl_step"].items()]):
                ach = r.get("achieved")
                mult = r.get("multiple")
                print(f"  {label:28s} {r['seconds']:8.3f} s  {(ach or 0) / 1e9:7.1f} GFLOP/s  "
                      f"{'x' + format(mult, '.1f') if mult else '-':>7s} of its floor")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
