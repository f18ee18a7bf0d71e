"""The testbed's instruments: verdicts of the comparison steps, shortcut ceilings, the teacher-forced verdict
AUC, and the card's rationale share, which must withhold rationales from every SFT target."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from she_bench.data.cards import DataError, load_benchmark
from she_bench.data.schema import Example
from she_bench.evaluation.ceilings import ceilings
from she_bench.evaluation.conditioning import grouped_auc, verdict_auc, verdict_prefix
from she_bench.reasoning.template import gold_rationale, render_prompt, with_rationale
from she_bench.reasoning.verdicts import split_verdict, verdict, verdict_correct

CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")
LABELS = ["Exact", "Substitute", "Complement", "Irrelevant"]


# ---------------------------------------------------------------- verdicts

def test_verdicts_read_what_a_step_decides():
    assert verdict("category_matching", "boots vs sandals: same group", LABELS) == "same group"
    assert verdict("attribute_matching", "color=green vs blue: mismatch", LABELS) == "mismatch"
    assert verdict("attribute_matching", "brand=a vs b: match; color=red vs red: match", LABELS) == "match; match"
    assert verdict("attribute_matching", "none", LABELS) is None  # nothing to check
    assert verdict("relevance_judgment", "Substitute", LABELS) == "Substitute"
    assert verdict("item_understanding", "category=boots", LABELS) is None  # copy steps decide nothing
    cut = split_verdict("attribute_matching", "color=green vs blue: mismatch", LABELS)
    assert (cut.prefix, cut.key, cut.value) == ("color=green vs blue:", "color", "mismatch")
    # the verdict alone is judged: wrong copied values with the gold verdict still give the gold verdict
    assert verdict_correct("attribute_matching", "color=green vs blue: mismatch", "color=green vs red: mismatch", LABELS)
    assert not verdict_correct("attribute_matching", "color=green vs blue: mismatch", "color=green vs blue", LABELS)
    assert not verdict_correct("category_matching", "boots vs boots: same", None, LABELS)
    assert verdict_correct("attribute_matching", "none", "none", LABELS) is None


# ---------------------------------------------------------------- ceilings

def pair(i: int, query: str, category: str, relation: str, split: str = "train", query_type: str = "plain") -> Example:
    steps = {"category_matching": f"{query} vs {category}: {relation}", "relevance_judgment": "Exact"}
    return Example(id=f"{split}-{i}", query_id=f"{split}-{query}", query=query, item={"title": category},
                   label="Exact", query_type=query_type, steps=steps, facts={"category": category})


def test_item_blind_ceiling_worked_by_hand():
    # train: "boots" queries are mostly about the same category, "mug" queries mostly about a sibling
    train = ([pair(i, "boots", "boots", "same") for i in range(8)] + [pair(8 + i, "boots", "mug", "unrelated") for i in range(2)]
             + [pair(10 + i, "mug", "tumbler", "same group") for i in range(8)] + [pair(18 + i, "mug", "mug", "same") for i in range(2)])
    # the blind predictor's best guesses: boots -> same, mug -> same group; the constant guess: same (10 of 20)
    test = [pair(0, "boots", "boots", "same", "test"), pair(1, "boots", "boots", "same", "test"),
            pair(2, "boots", "mug", "unrelated", "test"), pair(3, "mug", "tumbler", "same group", "test")]
    c = ceilings(train, test, LABELS)["category_matching"]
    assert c["predictor"] == "item-blind" and c["n"] == 4
    assert c["fitted"] == 0.75  # right on pairs 0, 1 and 3
    assert c["constant_verdict"] == "same" and c["constant"] == 0.5
    assert c["ceiling"] == 0.75  # the better of the two


def test_ceiling_is_never_below_the_constant_guess():
    train = [pair(i, "boots", "boots", "same") for i in range(6)] + [pair(6 + i, "mug", "mug", "unrelated") for i in range(3)]
    test = [pair(0, "mug", "mug", "same", "test")]  # the fit says unrelated for mug, the constant says same
    c = ceilings(train, test, LABELS)["category_matching"]
    assert c["fitted"] == 0.0 and c["constant"] == 1.0 and c["ceiling"] == 1.0


def test_data_describe_prints_the_ceilings(capsys):
    from she_bench.cli import main

    assert main(["data", "describe", CARD]) == 0
    out = capsys.readouterr().out
    assert "verdict ceilings" in out
    assert "category_matching" in out and "item-blind" in out and "attribute-blind" in out


# ---------------------------------------------------------------- the verdict AUC

class _Cache:
    """What a real model's cache offers the conditioning code: the ids read so far, per row."""

    def __init__(self, rows: list[list[int]]):
        self.rows = rows

    def batch_select_indices(self, indices):
        self.rows = [self.rows[i] for i in indices.tolist()]


class _Fake(torch.nn.Module):
    """A causal LM stand-in: with `gold` (a set of token-id sequences) it puts its mass on the token that
    continues a gold sequence (it 'copies the gold'); without, its logits are the same for every input."""

    def __init__(self, vocab: int, gold: list[list[int]] | None = None):
        super().__init__()
        self.vocab, self.bias = vocab, torch.nn.Parameter(torch.zeros(vocab))
        self.next = {}
        for ids in gold or []:
            for t in range(1, len(ids)):
                self.next[tuple(ids[:t])] = ids[t]

    def forward(self, input_ids, attention_mask, position_ids=None, logits_to_keep=0, use_cache=False, cache=None):
        b, t = input_ids.shape
        before = cache.rows if cache is not None else [[] for _ in range(b)]
        new_mask = attention_mask[:, -t:]
        logits = self.bias.expand(b, t, self.vocab).clone()
        rows = []
        for row in range(b):
            ids = input_ids[row].tolist()
            seen = list(before[row])
            for j in range(t):
                if new_mask[row, j]:
                    seen.append(ids[j])
                    nxt = self.next.get(tuple(seen))
                    if nxt is not None:
                        logits[row, j, nxt] = 20.0
            rows.append(seen)
        out = {"logits": logits[:, -logits_to_keep:] if logits_to_keep else logits}
        if use_cache:
            out["cache"] = _Cache(rows)
        return type("Out", (dict,), {"logits": property(lambda self: self["logits"])})(out)


@pytest.fixture(scope="module")
def tiny():
    from she_bench.models import train_toy_tokenizer
    from she_bench.pipeline import toy_corpus

    bench = load_benchmark(CARD, None, {"options": {"n_train": 400, "n_test_head": 60, "n_test_tail": 60}})
    return bench, train_toy_tokenizer(toy_corpus(bench), 512)


def test_auc_is_a_half_for_a_policy_that_ignores_the_input(tiny):
    bench, tok = tiny
    out = verdict_auc(_Fake(len(tok)), tok, bench.splits["test"], bench.splits["train"], bench.labels)
    assert set(out) == {"category_matching", "attribute_matching", "relevance_judgment"}
    for step, r in out.items():
        assert r["n"] > 0 and r["auc"] == 0.5, (step, r)


def test_auc_is_one_for_a_policy_that_copies_the_gold(tiny):
    bench, tok = tiny
    examples = bench.splits["test"]
    gold = []
    for ex in examples:
        prompt = render_prompt(ex, bench.labels, tok)
        gold.append(tok(prompt + gold_rationale(ex), add_special_tokens=False)["input_ids"])
    out = verdict_auc(_Fake(len(tok), gold), tok, examples, bench.splits["train"], bench.labels)
    for step, r in out.items():
        assert r["n"] > 0 and r["auc"] == 1.0, (step, r)


def test_verdict_prefix_stops_where_the_verdict_starts(tiny):
    bench, tok = tiny
    ex = next(e for e in bench.splits["test"] if e.steps["attribute_matching"] != "none")
    prefix, gold = verdict_prefix(ex, "attribute_matching", "P\n", bench.labels)
    assert prefix.startswith("P\n1. Query understanding: ") and prefix.endswith(":")
    assert (prefix + " " + gold).endswith(ex.steps["attribute_matching"])
    assert prefix.count("\n") == 4  # prompt line, then steps 1-3 and the start of step 4


def test_grouped_auc_never_credits_group_base_rates():
    # within each group the scores carry nothing; across groups they follow each group's base rate
    groups = ["a"] * 4 + ["b"] * 4
    gold = ["x", "x", "x", "y", "x", "y", "y", "y"]
    probs = [{"x": 0.75, "y": 0.25}] * 4 + [{"x": 0.25, "y": 0.75}] * 4
    assert grouped_auc(groups, gold, probs) == 0.5
    assert grouped_auc(["a"] * 8, gold, probs) > 0.7  # pooled, the same scores would look informed


# ---------------------------------------------------------------- rationale share

def load(**over):
    return load_benchmark(CARD, None, {"options": {"n_train": 200}, **over})


def test_rationale_share_is_nested_deterministic_and_head_biased_on_request():
    full, tenth, fifth = load(), load(rationale_share=0.1), load(rationale_share=0.2)
    assert all(ex.rationale for ex in full.splits["train"])
    ids = lambda b: {ex.id for ex in with_rationale(b.splits["train"])}  # noqa: E731
    assert len(ids(tenth)) == 20 and len(ids(fifth)) == 40 and ids(tenth) < ids(fifth)
    assert ids(tenth) == ids(load(rationale_share=0.1))
    assert all(ex.rationale for split in ("dev", "test") for ex in tenth.splits[split])  # evaluation keeps its gold
    assert tenth.data_hash() != full.data_hash() and full.data_hash() == load().data_hash()
    head = load(rationale_share=0.3, rationale_slices=["head"])
    assert len(ids(head)) == 60 and all("head" in ex.slices for ex in with_rationale(head.splits["train"]))
    with pytest.raises(DataError, match="rationale_share"):
        load(rationale_share=0.99, rationale_slices=["tail"])
    with pytest.raises(DataError, match="rationale_share"):
        load(rationale_share=1.5)


def test_withheld_rationales_reach_no_sft_target(tmp_path, monkeypatch):
    """Warm start and sft train on the SFT rows; DPO's gold fallback and the GRM's gold rows read gold_rationale:
    none of them may see a withheld pair's rationale."""
    from she_bench.config import make_config
    from she_bench.methods import dpo, train_grm
    from she_bench.methods.common import Context
    from she_bench.methods.sft import sft_rows
    from she_bench.runs import Run

    bench = load(rationale_share=0.25)
    train = bench.splits["train"]
    withheld = [ex for ex in train if not ex.rationale]
    assert len(withheld) == 150
    with pytest.raises(ValueError, match="withheld"):
        gold_rationale(withheld[0])
    rows = sft_rows(train, bench.labels, None)
    gold_texts = {gold_rationale(ex, withheld_ok=True) for ex in withheld}
    assert len(rows) == 50 and not gold_texts & {r["completion"] for r in rows}

    cfg = make_config("dpo", {"benchmark": CARD, "output_dir": str(tmp_path), "train": {"dpo_max_pairs": 100}})
    run = Run(cfg, bench.name)
    run.path.mkdir(parents=True)
    ctx = Context(cfg=cfg, bench=bench, run=run, base_model=tmp_path)

    def all_wrong(ctx, model, examples, k, desc="", cache=None):  # no sample is right: DPO falls back to the gold
        return [[{"text": "Label: Irrelevant", "pred": "Irrelevant" if ex.label != "Irrelevant" else "Exact",
                  "format_valid": False, "step_verdicts": {}, "n_tokens": 2}] * k for ex in examples]

    monkeypatch.setattr(dpo, "sample_rollouts", all_wrong)
    monkeypatch.setattr(dpo, "load_tokenizer", lambda path: None)
    pairs = dpo.build_pairs(ctx, tmp_path)
    by_id = {ex.id: ex for ex in train}
    assert pairs and all(by_id[p["example_id"]].rationale and p["chosen_is_gold"] for p in pairs)

    monkeypatch.setattr(train_grm, "sample_rollouts", lambda ctx, model, examples, k, desc="": [[] for _ in examples])
    _, _, record = train_grm.grm_data(ctx, tmp_path)  # no rollouts: every right row is a gold row
    held = round(train_grm.HELDOUT_SHARE * len(train))
    fitted = train_grm.seeded_sample(ctx, len(train))[held:]
    assert sum(c["right"] + c["dropped_right"] for c in record["trained_on"].values()) == sum(
        len(ex.steps) for ex in fitted if ex.rationale) > 0


def test_reading_the_prefix_once_gives_the_full_pass_log_probabilities(tiny):
    from transformers import LlamaConfig, LlamaForCausalLM

    from she_bench.evaluation.conditioning import candidate_logprobs

    bench, tok = tiny
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id)).eval()
    examples = bench.splits["test"][:5]
    prefixes = [verdict_prefix(ex, "category_matching", render_prompt(ex, bench.labels, tok), bench.labels)[0] for ex in examples]
    cands = [[" same\n", " same group\n", " unrelated\n"]] * len(prefixes)
    fast = candidate_logprobs(model, tok, prefixes, cands, batch_size=2)
    with torch.no_grad():
        for prefix, row, got in zip(prefixes, cands, fast):
            for cand, value in zip(row, got):
                head = tok(prefix, add_special_tokens=False)["input_ids"]
                full = tok(prefix + cand, add_special_tokens=False)["input_ids"]
                logp = torch.log_softmax(model(torch.tensor([full])).logits[0], -1)
                want = sum(float(logp[t - 1, full[t]]) for t in range(len(head), len(full)))
                assert abs(value - want) < 1e-4


def test_the_warm_start_cache_key_covers_template_pool_and_share(tmp_path, monkeypatch):
    """A changed template, pool or rationale share is never served an old warm start."""
    from she_bench.config import make_config
    from she_bench.methods import sft
    from she_bench.methods.common import Context
    from she_bench.models import resolve_model
    from she_bench.pipeline import toy_corpus
    from she_bench.reasoning import template
    from she_bench.runs import Run

    base_bench = load()
    base = resolve_model("toy-1m", toy_corpus(base_bench), 0)

    def key(bench):
        cfg = make_config("warm-start", {"benchmark": CARD, "output_dir": str(tmp_path)})
        return sft.warm_start_dir(Context(cfg=cfg, bench=bench, run=Run(cfg, bench.name), base_model=base))[0]

    first = key(base_bench)
    assert key(load()) == first  # the same data and template: the same warm start
    assert key(load(rationale_share=0.5)) != first
    assert key(load_benchmark(CARD, None, {"options": {"n_train": 120}})) != first
    monkeypatch.setattr(template, "step_line", lambda i, step, text: f"({i}) {step}: {text}")
    assert key(load()) != first  # the rationale is rendered differently
