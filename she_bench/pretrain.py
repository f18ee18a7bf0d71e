"""Pretrained toy bases: a toy model first trained on a card's unlabelled catalogue text.

A real policy starts from an LLM that already knows products and language; a toy model starts from random weights
and must learn both from the scarce rationales. A base is the toy analogue of that pretraining: the toy
architecture trained by the project's own code on catalogue knowledge from the card's train pool, each query with its
parse, each product with its facts, each category relation, and never an attribute comparison, a relevance
judgment or a label. Its tokenizer is trained on the same text and the template's fixed words.

    python -m she_bench.pretrain toy-1m-catalogue            # rebuild into she_bench/bases/toy-1m-catalogue/

The build writes the weights (safetensors), the tokenizer and `build.json` (corpus, steps, seed, loss, machine).
The shipped base is pinned by its hash in models.BASES, so every seed and machine starts from the same base, as a
real base model is the same for everyone; a rebuild is a different base (another hash) until it is pinned instead.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import time
from pathlib import Path

import torch

BASE_RECIPES = {
    "toy-1m-catalogue": {"arch": "toy-1m", "benchmark": "toyshop", "epochs": 1.0, "batch_size": 64, "lr": 2e-3,
                         "max_length": 128, "seed": 0},
}
"""How each shipped base is built: its architecture (a toy model), the card whose train pool gives the catalogue text,
and the training settings."""


def catalogue_lines(examples) -> list[str]:
    """Unlabelled catalogue knowledge from train pairs, one text per fact, in the pairs' order (a fact as often as
    the pool holds it): the query with its parse, the product with its facts, the category relation. The
    attribute-matching step, the relevance judgment and the label are never used."""
    from she_bench.data.schema import STEP_TITLES
    from she_bench.reasoning.template import render_item

    out = []
    for ex in examples:
        steps = ex.steps or {}
        if steps.get("query_understanding"):
            out.append(f"Query: {ex.query}\n1. {STEP_TITLES['query_understanding']}: {steps['query_understanding']}")
        if steps.get("item_understanding"):
            out.append(f"Product: {render_item(ex.item)}\n2. {STEP_TITLES['item_understanding']}: "
                       f"{steps['item_understanding']}")
        if steps.get("category_matching"):
            out.append(f"3. {STEP_TITLES['category_matching']}: {steps['category_matching']}")
    return out


def template_words(labels: list[str]) -> list[str]:
    """The template's fixed words (instruction, step titles, the answer line's key and the label names), so the
    tokenizer has tokens for the format the rationales use; no pair is paired with a label."""
    from she_bench.data.schema import STEP_TITLES
    from she_bench.reasoning.template import INSTRUCTION

    titles = [f"{i}. {t}:" for i, t in enumerate(STEP_TITLES.values(), start=1)]
    return [INSTRUCTION.format(labels=", ".join(labels)), "Steps:", *titles, "Label:", *labels,
            "4. Attribute matching: none"]


def build(name: str, out: Path) -> dict:
    """Train the named base into `out` (replaced whole once finished) and return its build record."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from she_bench.data.cards import load_benchmark
    from she_bench.models import TOY_MODELS, model_hash, toy_model, train_toy_tokenizer
    from she_bench.runs import build_env

    recipe = BASE_RECIPES[name]
    spec = TOY_MODELS[recipe["arch"]]
    bench = load_benchmark(recipe["benchmark"])
    lines = catalogue_lines(bench.splits["train"])
    random.Random(recipe["seed"]).shuffle(lines)
    tokenizer = train_toy_tokenizer(lines + template_words(bench.labels), spec.vocab)
    model = toy_model(spec, tokenizer, recipe["seed"])
    work = Path(out).with_name(Path(out).name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    args = SFTConfig(output_dir=str(work / "trainer"), num_train_epochs=recipe["epochs"], learning_rate=recipe["lr"],
                     per_device_train_batch_size=recipe["batch_size"], max_length=recipe["max_length"],
                     lr_scheduler_type="cosine", warmup_steps=10, seed=recipe["seed"], data_seed=recipe["seed"],
                     logging_steps=50, save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(),
                     dataloader_num_workers=0, dataset_text_field="text")
    t0 = time.time()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"text": x} for x in lines]),
                         processing_class=tokenizer)
    result = trainer.train()
    final = work / "model"
    trainer.model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    record = {"name": name, **recipe, "corpus": {"benchmark": bench.name, "data_hash": bench.data_hash(),
                                                 "texts": len(lines), "distinct": len(set(lines)),
                                                 "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()},
              "steps": result.global_step, "train_loss": round(result.training_loss, 4),
              "seconds": round(time.time() - t0, 1), "env": build_env(), "weights_hash": model_hash(final)}
    (final / "build.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    final.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m she_bench.pretrain", description="rebuild a pretrained toy base")
    ap.add_argument("name", choices=sorted(BASE_RECIPES))
    ap.add_argument("--out", help="where to write it (default: the shipped folder, she_bench/bases/<name>)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(__file__).parent / "bases" / args.name
    record = build(args.name, out)
    print(json.dumps(record, indent=2, sort_keys=True))
    print(f"built {args.name} into {out}; to ship it, pin weights_hash in she_bench/models.py BASES")


if __name__ == "__main__":
    main()
