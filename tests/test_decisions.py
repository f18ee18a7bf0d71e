"""Decision-token entropy, the forking tokens, KL and labels changed against a reference, on cases with known answers."""
import math

import pytest
import torch

from she_bench.evaluation import decisions as dec
from she_bench.models import load_model, load_tokenizer, resolve_model

TEXT = ("1. Query understanding: intent=attribute; category=boots; color=green\n"
        "2. Item understanding: category=boots; brand=pexa; color=blue; material=leather\n"
        "3. Category matching: boots vs boots: same\n"
        "4. Attribute matching: color=green vs blue: mismatch; brand=pexa vs pexa: match\n"
        "5. Relevance judgment: Substitute\n"
        "Label: Substitute")


def test_decision_starts_point_at_each_verdict_and_label():
    starts = dec.decision_starts(TEXT)
    word = lambda i: TEXT[i:].split()[0].strip(";")  # noqa: E731
    assert [word(i) for i in starts["category_matching"]] == ["same"]
    assert [word(i) for i in starts["attribute_matching"]] == ["mismatch", "match"]
    assert [word(i) for i in starts["relevance_judgment"]] == ["Substitute"]
    assert [word(i) for i in starts["label"]] == ["Substitute"] and starts["label"][0] > starts["relevance_judgment"][0]
    # a malformed output: nothing to point at, never an error
    assert dec.decision_starts("Label:") == {k: [] for k in dec.DECISION_KINDS}
    # a comparison written without its verdict (no ':' after what it compares) has none
    assert dec.decision_starts("3. Category matching: boots vs shoes")["category_matching"] == []


@pytest.fixture(scope="module")
def toy():
    path = resolve_model("toy-1m", [TEXT] * 20 + ["Query: boots\nProduct: category: boots\nSteps:\n"] * 20, seed=0)
    return path, load_model(path).eval(), load_tokenizer(path)


def test_a_uniform_policy_has_log_vocab_entropy_at_every_decision(toy):
    path, _, tok = toy
    model = load_model(path).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()  # every logit 0: the uniform distribution
    (read,) = dec.read_outputs(model, tok, ["Query: boots\nSteps:\n"], [TEXT])
    v = math.log(model.get_output_embeddings().weight.shape[0])
    assert len(read["entropy"]) == len(read["ends"]) and read["ends"][-1] == len(TEXT)
    assert all(abs(e - v) < 1e-4 for e in read["entropy"])
    fig = dec.output_figures(TEXT, read)
    assert all(abs(fig["decision_entropy"][k] - v) < 1e-4 for k in dec.DECISION_KINDS)
    assert abs(fig["top_entropy"] - v) < 1e-4 and fig["kl_ref"] is None


def test_teacher_forced_entropy_matches_generation_and_kl_is_zero_to_itself(toy):
    from she_bench.engines.hf import TransformersEngine

    path, model, tok = toy
    prompts = ["Query: boots\nProduct: category: boots\nSteps:\n", "Query: green boots\nSteps:\n"]
    gens = TransformersEngine(path, model=model, tokenizer=tok).generate(prompts, max_new_tokens=20, progress=False)
    reads = dec.read_outputs(model, tok, prompts, [g.text for g in gens], reference=model)
    for g, r in zip(gens, reads):
        # the same distributions as while generating (the EOS step, if any, is not part of the text)
        n = min(len(r["entropy"]), g.n_tokens)
        assert n > 0 and abs(sum(r["entropy"][:n]) / n - g.entropy) < 0.05 * max(1.0, g.entropy)
        assert max(r["kl"]) < 1e-5


def test_kl_to_another_model_is_positive_and_labels_changed_count_differences(toy):
    path, model, tok = toy
    other = load_model(path).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    (read,) = dec.read_outputs(model, tok, ["Query: boots\nSteps:\n"], [TEXT], reference=other)
    assert min(read["kl"]) >= 0 and dec.output_figures(TEXT, read)["kl_ref"] > 1e-4
    recs = [{"id": "a", "pred": "Exact"}, {"id": "b", "pred": "Substitute"}, {"id": "c", "pred": None},
            {"id": "d", "pred": "Exact"}]
    assert dec.labels_changed(recs, {"a": "Exact", "b": "Exact", "c": None, "d": None}) == 0.5
    assert dec.labels_changed(recs, {}) is None


def test_summary_means_leave_out_outputs_without_a_decision():
    recs = [{"decision_entropy": {"label": 0.2, "category_matching": None}, "top_entropy": 1.0, "kl_ref": 0.1},
            {"decision_entropy": {"label": 0.4, "category_matching": 0.6}, "top_entropy": 3.0, "kl_ref": None}]
    s = dec.summarise(recs, changed=0.25)
    assert s["entropy"]["label"] == pytest.approx(0.3) and s["entropy"]["category_matching"] == pytest.approx(0.6)
    assert s["outputs"]["category_matching"] == 1 and s["outputs"]["attribute_matching"] == 0
    assert s["top_entropy"] == pytest.approx(2.0) and s["kl_to_reference"] == pytest.approx(0.1)
    assert s["labels_changed"] == 0.25


def test_pass_at_1_against_pass_at_k_on_known_samples(tmp_path):
    from pathlib import Path

    from she_bench.config import make_config
    from she_bench.data.cards import load_benchmark
    from she_bench.engines import Generation
    from she_bench.evaluation.evaluate import sampled_accuracy
    from she_bench.reasoning.template import gold_rationale

    bench = load_benchmark(str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml"))
    examples = bench.splits["test"][:6]
    cfg = make_config("grpo", {"eval": {"samples": 4}})
    wrong = {lab: next(x for x in bench.labels if x != lab) for lab in bench.labels}

    class Engine:  # of each pair's 4 samples, the first is the gold chain, the rest name a wrong label
        tokenizer = None

        def generate(self, prompts, **kw):
            out = []
            for i, _ in enumerate(prompts):
                ex = examples[i // 4]
                text = gold_rationale(ex, withheld_ok=True, clean=True) if i % 4 == 0 else f"Label: {wrong[ex.label]}"
                out.append(Generation(text=text, n_tokens=1, entropy=0.0))
            return out

    r = sampled_accuracy(Engine(), examples, bench, cfg, progress=False, out=tmp_path / "sampled.jsonl")
    assert r["label_pass_at_1"] == pytest.approx(0.25) and r["label_pass_at_k"] == 1.0
    assert r["chain_pass_at_1"] == pytest.approx(0.25) and r["chain_pass_at_k"] == 1.0
    assert r["accuracy"] == pytest.approx(0.25)


def test_the_label_entropy_endpoint_reads_the_evidence():
    from she_bench.report.claims import label_entropy
    from she_bench.report.evidence import _slim, PREDICTION_FIELDS

    preds = [{"id": "a", "query_id": "q1", "gold": "E", "pred": "E", "decision_entropy": {"label": 0.123456789}},
             {"id": "b", "query_id": "q1", "gold": "E", "pred": "I", "decision_entropy": {"label": 0.3}},
             {"id": "c", "query_id": "q2", "gold": "E", "pred": None, "decision_entropy": {"label": None}}]
    slim = [_slim(p, PREDICTION_FIELDS) for p in preds]
    assert slim[0]["decision_entropy"]["label"] == 0.1235  # rounded like every entropy in the evidence
    got = label_entropy(type("Run", (), {"predictions": slim})())
    assert got == {"q1": (pytest.approx(0.4235), 2.0)}  # q2 wrote no label: nothing to count
