from types import SimpleNamespace

from she_bench.config import StageConfig, make_config
from she_bench.data.schema import Example
from she_bench.methods.filtering import report, select
from she_bench.methods.she import stage_examples


def ex(i, label, tail=False):
    return Example(id=f"e{i}", query_id=f"q{i}", query="q", item={"title": "t"}, label=label,
                   slices=["tail" if tail else "head"])


def test_band_and_stratum_cap_with_diverse_first():
    examples = [ex(0, "Exact"), ex(1, "Exact"), ex(2, "Exact"), ex(3, "Exact"), ex(4, "Irrelevant", True),
                ex(5, "Substitute"), ex(6, "Complement"), ex(7, "Exact")]
    cfg = make_config(None, {"filter": {"enabled": True, "pass_band": [0.01, 0.9], "stratum_cap": 0.4}})
    ctx = SimpleNamespace(cfg=cfg, train_examples=examples)
    rows = [{"id": "e0", "pass_rate": 0.5, "paths": 1}, {"id": "e1", "pass_rate": 0.25, "paths": 4},
            {"id": "e2", "pass_rate": 0.75, "paths": 3}, {"id": "e3", "pass_rate": 0.5, "paths": 2},
            {"id": "e4", "pass_rate": 0.5, "paths": 2}, {"id": "e5", "pass_rate": 0.0, "paths": 1},
            {"id": "e6", "pass_rate": 1.0, "paths": 1}, {"id": "e7", "pass_rate": 0.5, "paths": 1}]
    kept, decisions = select(ctx, rows)
    # in band: e0 e1 e2 e3 e7 (Exact) and e4 (Irrelevant) = 6; cap floor(0.4 * 6) = 2 Exact, the most diverse
    assert sorted(kept) == ["e1", "e2", "e4"]
    by = {d["id"]: d["decision"] for d in decisions}
    assert by["e5"] == "dropped: too hard" and by["e6"] == "dropped: too easy"
    assert by["e0"] == by["e3"] == by["e7"] == "dropped: stratum cap"
    rep = report(decisions)
    assert rep["by_reason"] == {"kept": 3, "dropped: stratum cap": 3, "dropped: too hard": 1, "dropped: too easy": 1}
    assert rep["by_stratum"]["Exact"] == {"kept": 2, "dropped: stratum cap": 3}
    assert rep["by_slice"]["tail"] == {"kept": 1}


def test_stage_selection_by_slice_and_pass_rate():
    examples = [ex(0, "Exact"), ex(1, "Exact", True), ex(2, "Exact", True)]
    rates = {"e0": 0.9, "e1": 0.2, "e2": 0.8}
    assert [e.id for e in stage_examples(StageConfig(slices=["tail"]), examples, rates)] == ["e1", "e2"]
    assert [e.id for e in stage_examples(StageConfig(slices=["tail"], pass_band=[0.0, 0.5]), examples, rates)] == ["e1"]
