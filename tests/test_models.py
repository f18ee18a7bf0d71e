"""Toy models and tokenizers (deterministic, cached, lossless), model resolution, engine entropy."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import she_bench.models as models
from she_bench.pipeline import toy_corpus
from she_bench.data.cards import load_benchmark
from she_bench.engines.hf import TransformersEngine, token_entropy
from she_bench.reasoning.template import gold_rationale, render_prompt


@pytest.fixture(scope="module")
def toyshop():
    return load_benchmark("toyshop")


@pytest.fixture(scope="module")
def corpus(toyshop):
    return toy_corpus(toyshop)


@pytest.fixture(scope="module")
def toy_dir(corpus):
    """toy-1m for toyshop, seed 0, in the session cache (the same model `she-bench eval` uses)."""
    return models.resolve_model("toy-1m", corpus, 0)


def test_toy_build_is_deterministic_per_seed(tmp_path, monkeypatch, corpus):
    small = corpus[:200]  # a smaller corpus keeps the three builds fast
    hashes = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path / name))
        path = models.resolve_model("toy-1m", small, seed)
        assert path.parent == tmp_path / name / "models"
        hashes.append(models.model_hash(path))
    assert hashes[0] == hashes[1]  # same seed, fresh cache: identical weights and tokenizer
    assert hashes[2] != hashes[0]  # another seed: another model


def test_toy_build_is_cached(toy_dir, corpus, monkeypatch):
    weights = toy_dir / "model.safetensors"
    mtime = weights.stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("a cached toy model was built again")

    monkeypatch.setattr(models, "train_toy_tokenizer", no_build)
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_config", no_build)
    assert models.resolve_model("toy-1m", corpus, 0) == toy_dir
    assert weights.stat().st_mtime_ns == mtime
    assert not [p for p in toy_dir.parent.iterdir() if ".tmp" in p.name]  # no half-built folders left


def test_toy_tokenizer_round_trips_benchmark_text(toy_dir, toyshop):
    tok = models.load_tokenizer(toy_dir)
    texts = [render_prompt(ex, toyshop.labels) + gold_rationale(ex, withheld_ok=True)
             for exs in toyshop.splits.values() for ex in exs[:400]]
    texts.append("Query: 'red' boots, size 9½ — not leather!\tLabel: Exact\n\n")
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    assert all(tok.unk_token_id not in seq for seq in ids)
    decoded = tok.batch_decode(ids)
    assert [i for i, (a, b) in enumerate(zip(texts, decoded)) if a != b] == []
    config = json.loads((toy_dir / "config.json").read_text())
    assert config["vocab_size"] == len(tok) <= models.TOY_MODELS["toy-1m"].vocab


def test_resolve_model_unknown_name():
    with pytest.raises(FileNotFoundError, match="nosuch-model") as err:
        models.resolve_model("nosuch-model")
    assert "toy-1m" in str(err.value) and "smollm2-135m" in str(err.value)
    with pytest.raises(ValueError, match="corpus"):
        models.resolve_model("toy-1m", None)


def test_smollm2_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="smollm2"):
        models.resolve_model("smollm2-135m")


def test_gguf_quantization_config_is_dropped(tmp_path):
    """A de-quantised GGUF model must not reload as a (frozen, unsaveable) gguf-quantized one."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "quantization_config": {"quant_method": "gguf"}}))
    models._drop_gguf_quantization(config)
    assert json.loads(config.read_text()) == {"model_type": "llama"}


def test_token_entropy_bounds():
    vocab = 50
    assert token_entropy(torch.zeros(3, vocab)) == pytest.approx(torch.full((3,), math.log(vocab)), abs=1e-5)
    peaked = torch.full((1, vocab), -1e4)
    peaked[0, 7] = 0
    assert float(token_entropy(peaked)) == pytest.approx(0, abs=1e-5)
    ent = token_entropy(torch.randn(64, vocab) * 5)
    assert bool(((ent >= 0) & (ent <= math.log(vocab) + 1e-5)).all())


def test_engine_entropy_in_range(toy_dir, toyshop):
    engine = TransformersEngine(toy_dir, device="cpu")
    prompts = [render_prompt(ex, toyshop.labels, engine.tokenizer) for ex in toyshop.splits["test"][:6]]
    gens = engine.generate(prompts, max_new_tokens=8, batch_size=4, progress=False)
    assert len(gens) == len(prompts)
    vocab = engine.model.config.vocab_size
    for g in gens:
        assert 0 < g.n_tokens <= 8 and isinstance(g.text, str)
        assert g.entropy is not None and 0.0 <= g.entropy <= math.log(vocab) + 1e-4


def test_the_catalogue_corpus_holds_facts_and_never_a_comparison_or_a_label():
    from she_bench.data.cards import load_benchmark
    from she_bench.pretrain import catalogue_lines

    train = load_benchmark(str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")).splits["train"]
    lines = catalogue_lines(train)
    assert len(lines) == 3 * len(train)
    text = "\n".join(lines)
    assert "1. Query understanding: " in text and "2. Item understanding: " in text and "3. Category matching: " in text
    for banned in ("Attribute matching", "Relevance judgment", "Label:"):
        assert banned not in text
    assert not any(line.rstrip().endswith(label) for line in lines for label in ("Exact", "Substitute", "Complement",
                                                                                   "Irrelevant"))


def test_the_shipped_base_loads_by_its_id_under_its_pinned_hash(tmp_path, monkeypatch):
    import json
    import shutil

    from she_bench import models

    folder = models.resolve_model("toy-1m-catalogue")
    assert folder == models.BASES_DIR / "toy-1m-catalogue" and models.model_hash(folder) == models.BASES["toy-1m-catalogue"]
    record = json.loads((folder / "build.json").read_text())
    assert record["corpus"]["benchmark"] == "toyshop" and record["steps"] > 0 and record["seed"] == 0
    assert models.load_model(folder).num_parameters() > 0
    # a changed file is a different base: refused until its hash is pinned
    copy = tmp_path / "toy-1m-catalogue"
    shutil.copytree(folder, copy)
    (copy / "tokenizer_config.json").write_text((copy / "tokenizer_config.json").read_text().replace("}", ' }', 1))
    monkeypatch.setattr(models, "BASES_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="not the pinned"):
        models.resolve_model("toy-1m-catalogue")
