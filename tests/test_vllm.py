"""The vLLM engine: greedy parity with the transformers engine, and its top-K entropy.

The parity test needs vLLM and is skipped without it (the default env); it runs in its own
environment with the community CPU build: `tox -e vllm`. There, the untrained toy-1m model
generates greedily for 16 toyshop test prompts through both engines in float32, and the
generated text, token count and parsed label/status must be identical.
"""
from __future__ import annotations

import importlib.util
import math
import random

import pytest

from she_bench.engines.vllm import topk_entropy

N_PROMPTS = 16
MAX_NEW_TOKENS = 64


def full_entropy(logprobs: list[float]) -> float:
    return -sum(math.exp(lp) * lp for lp in logprobs)


def test_topk_entropy_is_renormalised_lower_bound():
    rng = random.Random(0)
    for _ in range(200):
        vocab = rng.randint(2, 200)
        k = rng.randint(1, vocab)
        logits = [rng.gauss(0, rng.choice([0.1, 1.0, 5.0])) for _ in range(vocab)]
        log_z = math.log(sum(math.exp(x) for x in logits))
        logprobs = sorted((x - log_z for x in logits), reverse=True)
        approx = topk_entropy(logprobs[:k])
        assert approx <= full_entropy(logprobs) + 1e-9
        if k == vocab:
            assert approx == pytest.approx(full_entropy(logprobs), abs=1e-9)
    # a flat distribution: exactly log K over the top K
    assert topk_entropy([math.log(1 / 1000)] * 20) == pytest.approx(math.log(20))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_missing_vllm_is_a_clear_error(tmp_path):
    from she_bench.engines import build_engine

    with pytest.raises(ImportError, match=r"pip install -e '\.\[vllm\]'"):
        build_engine("vllm", tmp_path)


@pytest.mark.vllm
def test_greedy_parity_with_transformers():
    pytest.importorskip("vllm")
    import torch

    from she_bench.cli import toy_corpus
    from she_bench.data.cards import load_benchmark
    from she_bench.engines import build_engine
    from she_bench.engines.hf import TransformersEngine
    from she_bench.evaluation.evaluate import score_output
    from she_bench.models import resolve_model
    from she_bench.reasoning.template import render_prompt

    bench = load_benchmark("toyshop")
    path = resolve_model("toy-1m", toy_corpus(bench), seed=0)
    examples = bench.splits["test"][:N_PROMPTS]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hf = TransformersEngine(path, dtype=torch.float32)
        prompts = [render_prompt(ex, bench.labels, hf.tokenizer) for ex in examples]
        ref = hf.generate(prompts, max_new_tokens=MAX_NEW_TOKENS, batch_size=N_PROMPTS, progress=False)
    finally:
        torch.set_num_threads(threads)

    engine = build_engine("vllm", path, dtype="float32", max_model_len=512)
    assert type(engine).__name__ == "VLLMEngine"
    got = engine.generate(prompts, max_new_tokens=MAX_NEW_TOKENS, batch_size=N_PROMPTS, progress=False)

    assert len(got) == len(ref) == N_PROMPTS
    mismatches = [i for i, (a, b) in enumerate(zip(ref, got)) if (a.text, a.n_tokens) != (b.text, b.n_tokens)]
    assert not mismatches, "\n".join(f"{i}: transformers {ref[i].text!r}\n   vllm         {got[i].text!r}" for i in mismatches)
    for ex, a, b in zip(examples, ref, got):
        sa, sb = score_output(ex, a.text, bench.labels), score_output(ex, b.text, bench.labels)
        assert (sa["pred"], sa["status"], sa["step_verdicts"]) == (sb["pred"], sb["status"], sb["step_verdicts"])
        # vLLM's entropy is over the renormalised top 20: never above the full entropy
        assert b.entropy is not None and 0.0 <= b.entropy <= a.entropy + 1e-3
