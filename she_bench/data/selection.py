"""Which examples of a split a run evaluates: the whole split, a fixed query-stratified subset
(`eval.subset`) and the first `eval.limit` of those. Every method and the evaluation use the same
selection, so a classic baseline predicts exactly the pairs the LLM rows are scored on."""
from __future__ import annotations

import hashlib
import math

from she_bench.data.cards import Benchmark


def stratified_subset(examples: list, at_least: int) -> list:
    """A query-stratified subset of at least `at_least` pairs: every query keeps the same share of its
    pairs (rounded up), its first ones in a fixed order by id hash; independent of any run seed."""
    if at_least >= len(examples):
        return list(examples)
    share = at_least / len(examples)
    by_query: dict[str, list] = {}
    for ex in examples:
        by_query.setdefault(ex.query_id, []).append(ex)
    keep = set()
    for exs in by_query.values():
        ranked = sorted(exs, key=lambda e: hashlib.sha256(e.id.encode()).hexdigest())
        keep.update(e.id for e in ranked[:math.ceil(share * len(exs))])
    return [ex for ex in examples if ex.id in keep]


def eval_examples(benchmark: Benchmark, cfg) -> list:
    """The examples of `eval.split` a run evaluates (`eval.subset`, then `eval.limit`)."""
    examples = benchmark.splits[cfg.eval.split]
    if cfg.eval.subset is not None:
        examples = stratified_subset(examples, cfg.eval.subset)
    return examples[: cfg.eval.limit] if cfg.eval.limit is not None else examples
