"""Generation levers side by side: what a decode step of the RL rollouts costs, and against its floor.

    python benchmarks/perf/generation.py [--reps 5] [--threads 1] [overrides ...]

One process, the variants interleaved (A B C A B C ...), on the RL rollout shape (train.prompts_per_step prompts x
rl.group_size samples, up to rl.max_completion_length tokens, rl.temperature) from the cached warm start:

* generate: transformers' `generate` as TRL calls it (dynamic KV cache);
* generate-static: the same with `cache_implementation="static"` (TRL's `cache_implementation`);
* lean-loop: a plain decode loop (one forward per token on the KV cache, multinomial sampling, stop when every row
  has ended), the work `generate` does without its per-step processors and checks.

Prints each variant's median seconds, decode steps, tokens, ms per decode step and the ratio to `generate`, beside the
step's FLOP floor (benchmarks/perf/floor.py's model) at the measured peak.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401,E402
import torch  # noqa: E402
from _common import machine, make_context  # noqa: E402
from floor import Shape, peak  # noqa: E402


@torch.no_grad()
def lean_loop(model, ids, mask, max_new: int, temperature: float, eos: int, pad: int) -> torch.Tensor:
    """Sample up to max_new tokens per row with the KV cache; rows that ended get pad."""
    from transformers import DynamicCache

    cache = DynamicCache()
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    tokens = []
    for _ in range(max_new):
        logits = out.logits[:, -1, :].float() / temperature
        nxt = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        tokens.append(nxt)
        done |= nxt == eos
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=positions, past_key_values=cache,
                    use_cache=True)
    return torch.stack(tokens, dim=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine())
    ctx, init = make_context("srpo", overrides=args.overrides)
    from she_bench.evaluation.evaluate import prompts_for
    from she_bench.models import load_model, load_tokenizer

    cfg = ctx.cfg
    tok = load_tokenizer(init)
    model = load_model(init).eval()
    prompts = prompts_for(ctx.train_examples[:cfg.train.prompts_per_step], ctx.bench, cfg, tok)
    prompts = [p for p in prompts for _ in range(cfg.rl.group_size)]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    eos, pad, max_new, temp = tok.eos_token_id, tok.pad_token_id, cfg.rl.max_completion_length, cfg.rl.temperature

    def hf(static: bool):
        def run():
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=True, temperature=temp, top_p=1.0, top_k=0,
                                 pad_token_id=pad, eos_token_id=eos, cache_implementation="static" if static else None,
                                 disable_compile=True)
            return out[:, enc["input_ids"].shape[1]:]
        return run

    variants = {"generate": hf(False), "generate-static": hf(True),
                "lean-loop": lambda: lean_loop(model, enc["input_ids"], enc["attention_mask"], max_new, temp, eos, pad)}
    times = {k: [] for k in variants}
    steps = {k: [] for k in variants}
    tokens = {k: [] for k in variants}
    for rep in range(args.reps + 1):
        for name, fn in variants.items():
            torch.manual_seed(rep)
            t = time.perf_counter()
            new = fn()
            dt = time.perf_counter() - t
            if rep == 0:
                continue  # warm-up
            ended = (new == eos).any(1)
            lengths = torch.where(ended, (new == eos).int().argmax(1) + 1, torch.full_like(ended, new.shape[1], dtype=torch.long))
            times[name].append(dt)
            steps[name].append(new.shape[1])
            tokens[name].append(int(lengths.sum()))
    pk = peak(torch.float32, model.config.hidden_size)
    shape = Shape(model.config)
    plen = int(enc["attention_mask"].sum(1).float().mean())
    base = statistics.median(times["generate"])
    print(f"\n{len(prompts)} rollouts, up to {max_new} tokens, temperature {temp}, threads {args.threads}; peak "
          f"{pk['flops'] / 1e9:.0f} GFLOP/s")
    print(f"{'variant':16s} {'median s':>9s} {'steps':>6s} {'tokens':>7s} {'ms/step':>8s} {'x floor':>8s} {'vs generate':>12s}")
    for name in variants:
        s, n, t = statistics.median(times[name]), statistics.median(steps[name]), statistics.median(tokens[name])
        flops = len(prompts) * shape.decode(plen, int(t / len(prompts)))
        print(f"{name:16s} {s:9.3f} {n:6.0f} {t:7.0f} {1000 * s / n:8.2f} {s * pk['flops'] / flops:8.1f} "
              f"{base / s:11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
