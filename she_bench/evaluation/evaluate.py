"""Evaluate a model on a benchmark split: generate, parse, verify, score.

Predictions are appended to predictions.jsonl in chunks of `eval.save_every`, so a killed
evaluation resumes where it stopped; every example is kept, a malformed output is counted as a
parse failure. Returns the metrics; the caller writes metrics.json (once, with what it adds).
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from she_bench.data.cards import Benchmark
from she_bench.data.selection import eval_examples, stratified_subset
from she_bench.engines import build_engine
from she_bench.evaluation.ceilings import ceilings
from she_bench.evaluation.conditioning import verdict_auc
from she_bench.evaluation.metrics import compute_metrics
from she_bench.reasoning.template import render_prompt, with_rationale
from she_bench.rewards.verifier import score_output
from she_bench.runs import Run, read_jsonl, write_jsonl


def chain_right(ex, scored: dict) -> bool:
    """The whole chain right: format-valid, the gold label, and no checked step wrong."""
    return bool(scored["format_valid"] and scored["pred"] == ex.label
                and not any(v is False for v in (scored.get("step_verdicts") or {}).values()))


def sampled_accuracy(engine, examples, benchmark: Benchmark, cfg, progress: bool = True,
                     out: Path | None = None) -> dict:
    """Mean accuracy and format-valid rate of `eval.samples` outputs per prompt sampled at the
    training temperature, overall and per head/tail: what the policy does, not only its mode. With `out`, one
    row per example there (how many of its k samples have the right label, and the whole chain right: pass@k)."""
    k = cfg.eval.samples
    if cfg.eval.samples_subset is not None:
        examples = stratified_subset(examples, cfg.eval.samples_subset)
    temperature = cfg.eval.temperature if cfg.eval.temperature is not None else cfg.rl.temperature
    repeated = [ex for ex in examples for _ in range(k)]
    prompts = prompts_for(repeated, benchmark, cfg, getattr(engine, "tokenizer", None))
    gens = engine.generate(prompts, max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size,
                           temperature=temperature, seed=cfg.seed + 1, progress=progress)
    steps = cfg.prompt.style == "steps"
    scored = [(ex, score_output(ex, g.text, benchmark.labels, steps)) for ex, g in zip(repeated, gens)]

    def rates(subset):
        n = len(subset)
        return {"n": n, "accuracy": round(sum(s["pred"] == ex.label for ex, s in subset) / n, 6) if n else None,
                "format_valid_rate": round(sum(s["format_valid"] for _, s in subset) / n, 6) if n else None}

    result = {"samples": k, "temperature": temperature, "pairs": len(examples), **rates(scored)}
    for name in ("head", "tail"):
        result[name] = rates([(ex, s) for ex, s in scored if name in ex.slices])
    if out is not None:
        rows = []
        for i, ex in enumerate(examples):
            group = scored[i * k:(i + 1) * k]
            rows.append({"id": ex.id, "query_id": ex.query_id, "slices": ex.slices, "k": k,
                         "label_right": sum(s["pred"] == ex.label for _, s in group),
                         "chain_right": sum(chain_right(ex, s) for _, s in group)})
        write_jsonl(out, rows)
        # pass@1 (one sample) against pass@k (any of k): RL that only narrows the policy raises the first, not the
        # second
        for kind in ("label", "chain"):
            n = len(rows)
            result[f"{kind}_pass_at_1"] = round(sum(r[f"{kind}_right"] / k for r in rows) / n, 6) if n else None
            result[f"{kind}_pass_at_k"] = round(sum(r[f"{kind}_right"] > 0 for r in rows) / n, 6) if n else None
    return result


def prompt_shots(benchmark: Benchmark, cfg) -> list:
    """`prompt.shots` worked train examples, one per label in turn, chosen by the run's seed."""
    if cfg.prompt.shots <= 0:
        return []
    rng = random.Random(cfg.seed)
    train = benchmark.splits["train"] if cfg.prompt.style == "label" else with_rationale(benchmark.splits["train"])
    pools = {lab: [ex for ex in train if ex.label == lab] for lab in benchmark.labels}
    for pool in pools.values():
        rng.shuffle(pool)
    order = [lab for lab in benchmark.labels if pools[lab]]
    return [pools[order[i % len(order)]][i // len(order)] for i in range(cfg.prompt.shots)]


def prompts_for(examples, benchmark: Benchmark, cfg, tokenizer) -> list[str]:
    shots = prompt_shots(benchmark, cfg)
    return [render_prompt(ex, benchmark.labels, tokenizer, cfg.prompt, shots) for ex in examples]


def record(ex, scored: dict, **extra) -> dict:
    """One predictions.jsonl line."""
    return {"id": ex.id, "query_id": ex.query_id, "query": ex.query, "slices": ex.slices, "gold": ex.label,
            **scored, **extra}


def split_metrics(records: list[dict], benchmark: Benchmark, cfg) -> dict:
    metrics = compute_metrics(records, labels=benchmark.labels, good_labels=benchmark.card.good_labels,
                              slices=benchmark.card.slices, n_boot=cfg.eval.bootstrap, seed=cfg.seed)
    metrics["split"] = cfg.eval.split
    evaluated = {r["id"] for r in records}
    metrics["ceilings"] = split_ceilings(benchmark, cfg.eval.split, [ex for ex in eval_examples(benchmark, cfg)
                                                                     if ex.id in evaluated])
    return metrics


def split_ceilings(benchmark: Benchmark, split: str, examples: list) -> dict:
    """The verdict ceilings on the evaluated examples (evaluation/ceilings.py), cached by data and examples:
    they depend on nothing a run trains."""
    from she_bench.models import cache_dir
    from she_bench.runs import write_json

    key = hashlib.sha256(json.dumps([benchmark.data_hash(), split,
                                     [ex.id for ex in examples]]).encode()).hexdigest()[:16]
    path = cache_dir() / "ceilings" / f"{benchmark.name}-{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    out = ceilings(benchmark.splits["train"], examples, benchmark.labels, benchmark.card.slices)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, out)
    return out


def evaluate_labels(run: Run, benchmark: Benchmark, predicted: dict[str, str]) -> dict:
    """Metrics of a method that answers with a label and no reasoning (the classic baselines):
    every prediction is format-valid, no step is checked."""
    examples = eval_examples(benchmark, run.cfg)
    records = [record(ex, {"pred": predicted[ex.id], "status": "label_only", "format_valid": True, "well_formed": False,
                           "judgment": None, "steps": {}, "step_verdicts": {}}, entropy=None, n_tokens=0, text="")
               for ex in examples]
    (run.path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return split_metrics(records, benchmark, run.cfg)


def conditioning(engine, model_path: Path, benchmark: Benchmark, examples: list, cfg) -> dict:
    """The teacher-forced verdict AUCs (evaluation/conditioning.py), with the engine's model where it has one."""
    from she_bench.models import load_model, load_tokenizer

    model = getattr(engine, "model", None) or load_model(model_path).eval()
    tokenizer = getattr(engine, "tokenizer", None) or load_tokenizer(model_path)
    try:
        return verdict_auc(model, tokenizer, examples, benchmark.splits["train"], benchmark.labels, cfg.prompt,
                           benchmark.card.slices, batch_size=cfg.eval.batch_size)
    finally:
        tokenizer.padding_side = "left"


def decisions(engine, model_path: Path, records: list[dict], examples: list, benchmark: Benchmark, cfg, run: Run,
              reference: Path | None) -> dict:
    """The decision-token figures of every greedy output (evaluation/decisions.py), written into its predictions
    line (the file rewritten whole, atomically), and their means; against `reference` (the warm start) the KL and
    the share of labels changed."""
    from she_bench.evaluation import decisions as dec
    from she_bench.models import cache_dir, load_model, load_tokenizer

    model = getattr(engine, "model", None) or load_model(model_path).eval()
    tokenizer = getattr(engine, "tokenizer", None) or load_tokenizer(model_path)
    prompts = prompts_for(examples, benchmark, cfg, tokenizer)
    todo = [i for i, r in enumerate(records)
            if "decision_entropy" not in r or (reference is not None and r.get("kl_ref") is None)]
    if todo:
        ref = load_model(reference).to(next(model.parameters()).device).eval() if reference is not None else None
        reads = dec.read_outputs(model, tokenizer, [prompts[i] for i in todo],
                                 [records[i].get("text") or "" for i in todo], ref, cfg.eval.batch_size)
        for i, read in zip(todo, reads):
            records[i].update(dec.output_figures(records[i].get("text") or "", read))
        write_jsonl(run.path / "predictions.jsonl", records)
    changed = None
    if reference is not None:
        changed = dec.labels_changed(records, dec.reference_labels(reference, examples, prompts, benchmark.labels, cfg,
                                                                   cache_dir()))
    return dec.summarise(records, changed)


def evaluate(run: Run, benchmark: Benchmark, model_path: Path, engine=None, progress: bool = True,
             reference: Path | None = None) -> dict:
    """Greedy outputs of `model_path` on the evaluated split, scored; `reference` (the warm start a method trained
    from) is what the decision figures measure movement against."""
    cfg = run.cfg
    examples = eval_examples(benchmark, cfg)
    pred_path = run.path / "predictions.jsonl"
    records = read_jsonl(pred_path)
    done = {r["id"] for r in records}
    # rewrite the file without a possibly truncated last line before appending
    pred_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    todo = [ex for ex in examples if ex.id not in done]
    if todo:
        engine = engine or build_engine(cfg.engine, model_path)
        tokenizer = getattr(engine, "tokenizer", None)
        step = max(1, cfg.eval.save_every)
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            prompts = prompts_for(chunk, benchmark, cfg, tokenizer)
            gens = engine.generate(prompts, max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size,
                                   seed=cfg.seed, progress=progress)
            for ex, gen in zip(chunk, gens):
                rec = record(ex, score_output(ex, gen.text, benchmark.labels, cfg.prompt.style == "steps"),
                             entropy=gen.entropy, n_tokens=gen.n_tokens, text=gen.text)
                records.append(rec)
                run.log(rec, "predictions.jsonl")
    by_id = {r["id"]: r for r in records}
    metrics = split_metrics([by_id[ex.id] for ex in examples], benchmark, cfg)
    if cfg.eval.conditioning and cfg.prompt.style == "steps":
        metrics["conditioning"] = conditioning(engine, model_path, benchmark, examples, cfg)
    if cfg.eval.decisions and cfg.prompt.style == "steps":
        ordered = [by_id[ex.id] for ex in examples]
        metrics["decisions"] = decisions(engine, model_path, ordered, examples, benchmark, cfg, run, reference)
    if cfg.eval.samples > 0:
        engine = engine or build_engine(cfg.engine, model_path)
        metrics["sampled"] = sampled_accuracy(engine, examples, benchmark, cfg, progress,
                                              out=run.path / "sampled.jsonl")
    return metrics
