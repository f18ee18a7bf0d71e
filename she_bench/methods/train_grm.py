"""Training the generative GRM: SFT of the warm start to answer '+' (right) or '-' (wrong) for each step.

Its data are the warm start's own rollouts on a seeded sample of train prompts, each written step
labelled by the offline verifier (so it learns only steps the benchmark annotates), plus each prompt's
gold steps as right examples where the card gives the rationale. A judge trained on what a good policy
writes sees few wrong steps (the copy steps are about 0.99 right) and learns to call everything right,
so the data are **balanced per step kind**: where a kind has fewer wrong examples than right ones,
synthetic negatives are made from right ones by a realistic edit (a misread value in a `key=value`
step; another verdict in a comparison step: a wrong relation, a wrong match; another label), each
checked wrong by the verifier; where it has more wrong than right, wrong ones are dropped at random.

A fifth of the sampled prompts is held out: their rollouts (real steps only) choose the GRM's decision
threshold (the one that maximises the F1 of "wrong") and measure its quality (rewards/judge_quality.py).
What it was trained on (right, wrong, synthetic, dropped per step), its threshold and its held-out
quality go to `record.json` beside the model. The result is cached by the hash of the warm start, the
data and the GRM settings.
"""
from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from pathlib import Path

from she_bench.data.schema import STEPS
from she_bench.locks import file_lock
from she_bench.methods.common import Context, config_hash, in_stage, seeded_sample
from she_bench.methods.rollouts import sample_rollouts
from she_bench.methods.sft import run_sft
from she_bench.models import cache_dir, load_tokenizer, model_hash, unreadable
from she_bench.reasoning.parser import Parsed, parse
from she_bench.reasoning.template import gold_rationale, with_rationale
from she_bench.reasoning.verdicts import split_verdict
from she_bench.rewards.grm import GENERATIVE_ANSWERS, answer_token_ids, check_prompt
from she_bench.rewards.verifier import _pairs, step_matches
from she_bench.runs import is_main_process, process_state, write_json

HELDOUT_SHARE = 0.2
"""Share of the GRM's sampled prompts whose rollouts are held out for its threshold and quality."""


def vocabulary(examples, labels: list[str]) -> dict[tuple, list[str]]:
    """What the gold writes, by (step, key): the values of `key=value` steps and the verdicts of comparison
    steps; the material of realistic edits."""
    vocab: dict[tuple, set] = defaultdict(set)
    for ex in examples:
        for step, text in ex.steps.items():
            cut = split_verdict(step, text, labels)
            if cut is not None:
                vocab[("verdict", step, cut.key)].add(cut.value)
            elif (pairs := _pairs(text)) is not None:
                for k, v in pairs.items():
                    vocab[("value", step, k)].add(v)
    return {k: sorted(v) for k, v in vocab.items()}


def realistic_edit(ex, step: str, text: str, vocab: dict, labels: list[str], rng: random.Random) -> str | None:
    """A wrong version of a right step, as a policy would write it: another verdict for a comparison step,
    else one misread value of a `key=value` step; None when no edit is possible. Always verified wrong."""
    cut = split_verdict(step, text, labels)
    if cut is not None:
        options = [v for v in vocab.get(("verdict", step, cut.key), []) if v != cut.value.lower()]
        if step == "relevance_judgment":
            options = [lab for lab in labels if lab != cut.value]
        edited = f"{cut.prefix} {rng.choice(options)}" if options else None
        if edited is not None and cut.prefix == "":
            edited = edited.strip()
    else:
        pairs = _pairs(text)
        if not pairs:
            return None
        keys = [k for k in pairs if len(vocab.get(("value", step, k), [])) > 1]
        if not keys:
            return None
        key = rng.choice(keys)
        value = rng.choice([v for v in vocab[("value", step, key)] if v != pairs[key]])
        edited = "; ".join(f"{k}={value if k == key else v}" for k, v in pairs.items())
    gold = ex.steps.get(step)
    return edited if edited is not None and gold is not None and not step_matches(gold, edited) else None


def _items(ex, parsed: Parsed, verdicts: dict) -> list[tuple[str, bool]]:
    return [(s, bool(v)) for s, v in verdicts.items() if v is not None and s in parsed.steps]


def grm_data(ctx: Context, init: Path) -> tuple[list[dict], list[tuple[dict, list]], dict]:
    """(balanced training rows, held-out chains as (example, parsed, verdicts), the data's record)."""
    labels = ctx.bench.labels
    right, wrong = ctx.cfg.reward.grm_answers or GENERATIVE_ANSWERS
    # From the whole train split, not the stage's prompts: a filtered or curriculum stage would leave the
    # GRM a few dozen prompts, and one cache entry must mean one training set.
    examples = seeded_sample(dataclasses.replace(ctx, examples=None), ctx.cfg.reward.grm_prompts)
    rollouts = sample_rollouts(ctx, init, examples, ctx.cfg.reward.grm_rollouts, "grm data")
    n_held = round(HELDOUT_SHARE * len(examples))
    heldout = [(ex, parse(s["text"], labels), s["step_verdicts"])
               for ex, samples in zip(examples[:n_held], rollouts[:n_held]) for s in samples]
    pool: dict[str, dict[bool, list]] = {s: {True: [], False: []} for s in STEPS}  # step -> right? -> (ex, parsed)
    for ex, samples in zip(examples[n_held:], rollouts[n_held:]):
        if not ex.annotated:  # the card's annotation_share: nobody knows this pair's steps, so no step label
            continue
        if ex.rationale:
            gold = parse(gold_rationale(ex, clean=True), labels)
            for step in ex.steps:
                if step in gold.steps:
                    pool[step][True].append((ex, gold))
        for s in samples:
            parsed = parse(s["text"], labels)
            for step, ok in _items(ex, parsed, s["step_verdicts"]):
                pool[step][ok].append((ex, parsed))
    rng = random.Random(ctx.cfg.seed)
    vocab = vocabulary(with_rationale(ctx.train_examples), labels)
    rows, record = [], {}
    for step, by in pool.items():
        rights, wrongs = by[True], by[False]
        made = []
        for ex, parsed in rng.sample(rights, len(rights)):
            if len(wrongs) + len(made) >= len(rights):
                break
            edited = realistic_edit(ex, step, parsed.steps[step], vocab, labels, rng)
            if edited is not None:
                made.append((ex, dataclasses.replace(parsed, steps={**parsed.steps, step: edited})))
        kept_wrong = rng.sample(wrongs, min(len(wrongs), len(rights)))
        kept_right = rng.sample(rights, min(len(rights), len(kept_wrong) + len(made)))
        record[step] = {"right": len(kept_right), "wrong": len(kept_wrong), "synthetic": len(made),
                        "dropped_right": len(rights) - len(kept_right), "dropped_wrong": len(wrongs) - len(kept_wrong)}
        rows += [{"prompt": check_prompt(ex, p, step), "completion": right} for ex, p in kept_right]
        rows += [{"prompt": check_prompt(ex, p, step), "completion": wrong} for ex, p in kept_wrong + made]
    rng.shuffle(rows)
    return rows, heldout, {"trained_on": record, "heldout_prompts": n_held, "heldout_chains": len(heldout)}


def measure(grm_path: Path, heldout, labels: list[str], answers) -> dict:
    """Threshold and quality of a trained GRM on its held-out chains."""
    from she_bench.rewards.grm import GenerativeGRM
    from she_bench.rewards.judge_quality import best_threshold, judge_quality

    grm = GenerativeGRM(grm_path, answers=answers, threshold=0.5)
    scores = grm.score([ex for ex, _, _ in heldout], [p for _, p, _ in heldout]) if heldout else []
    items = [(verdicts, sc) for (_, _, verdicts), sc in zip(heldout, scores)]
    pairs = [(not truth[s], sc[s]) for truth, sc in items for s in STEPS
             if truth.get(s) is not None and sc.get(s) is not None]
    threshold = best_threshold(pairs)
    return {"threshold": threshold, "heldout": judge_quality(items, threshold)}


def train_generative_grm(ctx: Context, init: Path) -> Path:
    cfg = ctx.cfg
    answers = tuple(cfg.reward.grm_answers or GENERATIVE_ANSWERS)
    answer_token_ids(load_tokenizer(init), answers, f"generative GRM ({init})")  # refuse before training, not after
    key = config_hash(model_hash(init), ctx.bench.data_hash(), cfg.reward.grm_rollouts, cfg.reward.grm_prompts,
                      cfg.reward.grm_epochs, cfg.rl.temperature, cfg.seed, answers, "balanced", "whole-train")
    out_dir = cache_dir() / "grm" / f"{ctx.bench.name}-{key}"
    record_path = out_dir / "record.json"
    if record_path.exists() and unreadable(out_dir / "final", "config.json", "*.safetensors") is None:
        # whole already, no lock needed: after training rank 0 alone scores the GRM (pipeline.grm_quality), where a
        # data-parallel lock would wait for ranks that have finished
        return out_dir / "final"
    with in_stage(ctx, "grm"), file_lock(out_dir, collective=True):
        data: dict = {}

        def rows():
            data["rows"], data["heldout"], data["record"] = grm_data(ctx, init)
            return data["rows"]

        final = run_sft(ctx, init, out_dir, cfg.reward.grm_epochs, cfg.warm_start.lr, rows=rows)
        if not record_path.exists():
            if is_main_process():
                # trained before, killed before its record: rebuild the data (cached rollouts)
                if "heldout" not in data:
                    rows()
                write_json(record_path, {**data["record"],
                                         **measure(final, data["heldout"], ctx.bench.labels, answers)})
            process_state().wait_for_everyone()  # every rank reads the same threshold
    return final
