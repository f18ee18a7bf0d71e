from types import SimpleNamespace

from she_bench.config import StageConfig, make_config
from she_bench.data.schema import Example
from she_bench.methods.filtering import report, select, stratum_quota
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
    # in band: e0 e1 e2 e3 e7 (Exact) and e4 (Irrelevant). Two strata cannot meet a 0.4 cap, so it becomes
    # 1/2: one Exact (the most diverse, e1) beside the one Irrelevant.
    assert sorted(kept) == ["e1", "e4"]
    by = {d["id"]: d["decision"] for d in decisions}
    assert by["e5"] == "dropped: too hard" and by["e6"] == "dropped: too easy"
    assert by["e0"] == by["e2"] == by["e3"] == by["e7"] == "dropped: stratum cap"
    rep = report(decisions, cap=0.4)
    assert rep["by_reason"] == {"kept": 2, "dropped: stratum cap": 4, "dropped: too hard": 1, "dropped: too easy": 1}
    assert rep["by_stratum"]["Exact"] == {"kept": 1, "dropped: stratum cap": 4}
    assert rep["by_slice"]["tail"] == {"kept": 1}
    assert rep["keep_rate_by_stratum"]["Exact"] == 0.2 and rep["keep_rate_by_slice"]["tail"] == 1.0
    assert rep["keep_rate_by_label"] == {"Complement": 0.0, "Exact": 0.2, "Irrelevant": 1.0, "Substitute": 0.0}
    assert rep["stratum_cap"] == 0.4 and rep["stratum_cap_effective"] == 0.5


def test_stratum_cap_holds_on_the_kept_set():
    labels = ["Exact"] * 30 + ["Substitute"] * 12 + ["Irrelevant"] * 5 + ["Complement"] * 3
    examples = [ex(i, lab) for i, lab in enumerate(labels)]
    cfg = make_config(None, {"filter": {"enabled": True, "pass_band": [0.0, 1.0], "stratum_cap": 0.4}})
    kept, _ = select(SimpleNamespace(cfg=cfg, train_examples=examples),
                     [{"id": e.id, "pass_rate": 0.5, "paths": 1} for e in examples])
    counts = {lab: sum(examples[int(i[1:])].label == lab for i in kept) for lab in set(labels)}
    assert max(counts.values()) <= 0.4 * len(kept)
    # the largest such set: every stratum keeps min(size, m) for the largest m that meets the cap
    assert counts == {"Exact": 13, "Substitute": 12, "Irrelevant": 5, "Complement": 3}  # 13 <= 0.4 * 33


def test_stratum_quota_by_hand():
    assert stratum_quota({"a": 10, "b": 10, "c": 10}, 0.4) == {"a": 10, "b": 10, "c": 10}
    assert stratum_quota({"a": 10, "b": 2, "c": 2}, 0.5) == {"a": 4, "b": 2, "c": 2}
    assert stratum_quota({"a": 10, "b": 1}, 0.4) == {"a": 1, "b": 1}  # two strata: equal shares at most
    assert stratum_quota({"a": 7}, 0.4) == {"a": 7}  # one stratum: the cap cannot apply
    assert stratum_quota({}, 0.4) == {}


def test_stage_selection_by_slice_and_pass_rate():
    examples = [ex(0, "Exact"), ex(1, "Exact", True), ex(2, "Exact", True)]
    rates = {"e0": 0.9, "e1": 0.2, "e2": 0.8}
    assert [e.id for e in stage_examples(StageConfig(slices=["tail"]), examples, rates)] == ["e1", "e2"]
    assert [e.id for e in stage_examples(StageConfig(slices=["tail"], pass_band=[0.0, 0.5]), examples, rates)] == ["e1"]


def test_budget_scoring_scores_what_the_budget_needs_at_the_keep_rate(monkeypatch):
    """filter.scoring=budget: a quarter of prompts in band, so keeping an RL budget of B distinct prompts takes about
    4B scored; the count scales with the budget and stops at the pool. fixed: max_prompts, whatever the budget."""
    from she_bench.methods import filtering

    pool = [ex(i, "Exact") for i in range(2000)]
    monkeypatch.setattr(filtering, "score", lambda ctx, init, examples: [
        {"id": e.id, "pass_rate": 0.5 if int(e.id[1:]) % 4 == 0 else 1.0, "paths": 1} for e in examples])

    def scored(scoring, steps, per_step=8, examples=pool):
        cfg = make_config(None, {"filter": {"enabled": True, "scoring": scoring, "max_prompts": 600},
                                 "train": {"max_steps": steps, "prompts_per_step": per_step}})
        rows, how = filtering.estimate(SimpleNamespace(cfg=cfg, train_examples=examples), None)
        return len(rows), filtering.in_band(rows, cfg.filter.pass_band), how

    n50, kept50, how = scored("budget", 50)
    assert kept50 >= 400 and 1500 <= n50 <= 1700 and how["target"] == 400 and how["rounds"] >= 2
    n10, kept10, _ = scored("budget", 10)
    assert kept10 >= 80 and 300 <= n10 <= 360  # a fifth of the budget, a fifth of the scoring
    n_all, _, how = scored("budget", 100)
    assert n_all == 2000 and how["pool"] == 2000  # the pool ends first: every prompt scored once
    assert scored("fixed", 50)[0] == scored("fixed", 10)[0] == 600
    assert make_config("she").hash() == make_config("she", {"filter": {"scoring": "fixed"}}).hash()  # the old default
