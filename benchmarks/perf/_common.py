"""Shared helpers for the perf benchmarks (not a test): context building, thread pinning, stats.

The machine these were written on is a 2-core CPU box that may be loaded by other jobs, so every
benchmark interleaves the variants it compares (A B A B ...) inside one process and reports medians
and ratios rather than absolute numbers alone.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import datetime
import platform
import statistics
import tempfile

import torch

torch.set_num_threads(1)


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} threads={torch.get_num_threads()}, "
            f"loadavg {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, {datetime.datetime.now().isoformat(timespec='seconds')}")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def iqr(xs):
    if len(xs) < 2:
        return (float("nan"), float("nan"))
    q = statistics.quantiles(xs, n=4)
    return (q[0], q[2])


def make_context(recipe: str = "srpo", model: str = "toy-1m", benchmark: str = "toyshop",
                 overrides: list[str] | None = None, output_dir: str | None = None):
    """(ctx, warm-start path) exactly as `she-bench run --method RECIPE` builds them; the warm start
    comes from the she-bench cache (SHE_BENCH_CACHE or ~/.cache/she-bench) when already trained."""
    from she_bench.pipeline import toy_corpus
    from she_bench.config import make_config, parse_overrides
    from she_bench.data.cards import load_benchmark
    from she_bench.methods.common import Context
    from she_bench.methods.sft import warm_start
    from she_bench.models import resolve_model
    from she_bench.runs import Run

    out = output_dir or tempfile.mkdtemp(prefix="she-perf-")
    cfg = make_config(recipe, {**parse_overrides(overrides or []), "benchmark": benchmark, "model": model,
                               "output_dir": out})
    bench = load_benchmark(cfg.benchmark, cfg.data_dir, cfg.card)
    run = Run(cfg, bench.name)
    run.path.mkdir(parents=True, exist_ok=True)
    ctx = Context(cfg=cfg, bench=bench, run=run, base_model=resolve_model(cfg.model, toy_corpus(bench), cfg.seed))
    return ctx, warm_start(ctx)
