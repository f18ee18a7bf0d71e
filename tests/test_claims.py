"""The claim experiments' machinery: the card knobs, the shuffled negative control, ratio endpoints and verdicts."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from she_bench.ablate import load_suite
from she_bench.data.cards import load_benchmark
from she_bench.data.toyshop import checks, judge, relation, Query, Item
from she_bench.report.claims import equivalent, verdict, VERDICTS, build_claims, load_experiment
from she_bench.report.claims_pages import write_claims
from she_bench.report.stats import contrast, ratio

CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")
EXPERIMENTS = sorted((Path(__file__).parents[1] / "benchmarks" / "experiments").glob("*.yaml"))


def _noisy(**over):
    return load_benchmark(CARD, overrides={"rationale_share": 1.0, **over}).splits["train"]


def test_teacher_noise_corrupts_the_declared_share_consistently_and_reproducibly():
    train = _noisy(teacher_noise=0.5)
    noisy = [ex for ex in train if ex.teacher]
    assert len(noisy) == round(0.5 * len(train))
    assert [ex.id for ex in noisy] == [ex.id for ex in _noisy(teacher_noise=0.5) if ex.teacher]  # the card's seed
    assert {ex.id for ex in _noisy(teacher_noise=0.25) if ex.teacher} <= {ex.id for ex in noisy}  # nested
    for ex in noisy:
        assert ex.noise in ("wrong category relation", "misread brand", "misread color", "misread material")
        assert "relevance_judgment" not in ex.teacher and all(ex.teacher[s] != ex.steps[s] for s in ex.teacher)
        # the teacher's chain is consistent: its item, read back, gives the human label by the rules
        f = ex.facts
        item = dict(p.split("=", 1) for p in ex.teacher.get("item_understanding", ex.steps["item_understanding"]).split("; "))
        q = Query(ex.query_type, f["query_category"], f.get("query_brand", ""), f.get("query_color", ""),
                  f.get("query_material", ""), f.get("query_exclude", ""))
        it = Item(item["category"], item["brand"], item["color"], item["material"])
        assert judge(q.intent, relation(q.category, it.category), [(k, v) for k, _, _, v in checks(q, it)]) == ex.label
    kinds = Counter(ex.noise for ex in noisy)
    assert len(kinds) >= 2, kinds


def test_annotation_share_marks_a_nested_seeded_share_of_train():
    train = load_benchmark(CARD, overrides={"annotation_share": 0.5}).splits["train"]
    known = {ex.id for ex in train if ex.annotated}
    assert len(known) == round(0.5 * len(train))
    assert {ex.id for ex in load_benchmark(CARD, overrides={"annotation_share": 0.2}).splits["train"] if ex.annotated} <= known


@pytest.mark.parametrize("key", ["teacher_noise", "annotation_share"])
def test_a_knob_out_of_range_is_refused(key):
    with pytest.raises(ValueError, match=key):
        load_benchmark(CARD, overrides={key: 1.5})


def test_shuffled_step_rewards_are_a_within_group_permutation():
    from types import SimpleNamespace

    from she_bench.methods.srpo import SRPOTrainer

    g, groups = 4, 3
    rewards = torch.arange(g * groups * 5, dtype=torch.float32).view(g * groups, 5)
    fake = SimpleNamespace(num_generations=g, ctx=SimpleNamespace(cfg=SimpleNamespace(seed=7, rl_seed=7)),
                           state=SimpleNamespace(global_step=3))
    out = SRPOTrainer.shuffled(fake, rewards)
    assert not torch.equal(out, rewards)
    for i in range(groups):
        rows = lambda t: sorted(map(tuple, t[i * g:(i + 1) * g].tolist()))  # noqa: E731
        assert rows(out) == rows(rewards)  # the same rows, within the same group
    assert torch.equal(out, SRPOTrainer.shuffled(fake, rewards))  # seeded


def test_ratio_endpoint_interval_covers_the_truth():
    # 3 seeds x 150 queries; per query (num, den) with a seed effect: the 95% interval of A - B covers the true 0.05
    rng = np.random.default_rng(0)
    hits, trials = 0, 120
    for t in range(trials):
        q_rate = rng.beta(4, 6, size=150)
        arms = []
        for shift in (0.05, 0.0):
            runs = []
            for s in range(3):
                den = rng.integers(1, 5, size=150).astype(float)
                p = np.clip(q_rate + shift + rng.normal(0, 0.02), 0, 1)
                runs.append(np.stack([rng.binomial(den.astype(int), p), den], axis=1).astype(float))
            arms.append(runs)
        est = contrast([(1.0, arms[0]), (-1.0, arms[1])], ratio, n_boot=300, seed=t)
        hits += est["lo"] <= 0.05 <= est["hi"]
    assert hits / trials >= 0.9, hits / trials


def test_each_verdict_path():
    # (diff, p_holm, direction, positive control detected, negative control equivalent, primary equivalent)
    assert verdict(-0.05, 0.01, "lower", True, True, False) == "supported"
    assert verdict(0.05, 0.01, "lower", True, True, False) == "contradicted"
    assert verdict(-0.05, 0.01, "lower", True, False, False) == "negative control not equivalent"
    assert verdict(-0.05, 0.01, "lower", True, None, False) == "negative control not equivalent"  # not measured
    assert verdict(-0.001, 0.6, "lower", True, True, True) == "absent"
    assert verdict(-0.05, 0.2, "lower", True, True, False) == "inconclusive at this power"
    assert verdict(-0.05, 0.001, "lower", False, True, False) == "unable to see"  # a failed positive control trumps all
    assert verdict(-0.001, 0.6, "lower", False, True, True) == "unable to see"
    assert set(VERDICTS) == {"supported", "contradicted", "negative control not equivalent", "absent",
                             "inconclusive at this power", "unable to see"}


def test_equivalence_is_tost_against_the_declared_margin():
    # the 90% interval (t on df) inside +-margin; a non-significant difference with a wide interval is not equivalent
    assert equivalent({"diff": 0.0, "se": 0.004, "df": 2.0}, 0.03) is True  # 2.92 x 0.004 = 0.012 < 0.03
    assert equivalent({"diff": 0.0, "se": 0.02, "df": 2.0}, 0.03) is False  # 0.058 > 0.03, though p = 1
    assert equivalent({"diff": 0.02, "se": 0.004, "df": 2.0}, 0.03) is False  # 0.032 > 0.03
    assert equivalent({"diff": 0.0, "se": 0.004, "df": 2.0}, None) is None


def test_tost_size_at_the_margin_is_about_five_percent():
    # three seeds, a true difference exactly at the margin: equivalence must be (wrongly) declared about 5% of the
    # time, and about never at twice the margin; at zero it is declared often when the noise is small
    from she_bench.report.stats import tost_interval

    rng, margin, sd, n = np.random.default_rng(0), 0.02, 0.01, 3
    def rate(truth):
        d = truth + rng.normal(0, sd, size=(20000, n))
        ests = [{"diff": float(x.mean()), "se": float(x.std(ddof=1) / np.sqrt(n)), "df": n - 1.0} for x in d]
        return np.mean([equivalent(e, margin) for e in ests])
    assert 0.035 <= rate(margin) <= 0.065
    assert rate(2 * margin) < 0.01
    assert rate(0.0) > rate(margin)
    lo, hi = tost_interval({"diff": 0.0, "se": 1.0, "df": 2.0})
    assert hi == pytest.approx(2.919986, abs=1e-5) and lo == -hi


def test_the_mdd_is_finite_and_monotone_where_scipy_returns_nan():
    from scipy import stats as st

    from she_bench.report.stats import mdd, power_t

    crit = st.t.ppf(0.995, 2)  # the scipy behaviour this guards against (scipy 1.17: NaN at ncp 8, df 2)
    scipy_power = st.nct.sf(crit, 2, 8.0) + st.nct.cdf(-crit, 2, 8.0)
    assert power_t(8.0, 2, 0.01) == pytest.approx(0.4763, abs=1e-4) and (np.isnan(scipy_power) or scipy_power > 0.47)
    grid = np.linspace(0, 25, 126)
    powers = [power_t(x, 2, 0.01) for x in grid]
    assert all(np.isfinite(powers)) and all(b >= a - 1e-10 for a, b in zip(powers, powers[1:]))
    assert powers[0] == pytest.approx(0.01, abs=1e-6) and powers[-1] > 0.99
    assert mdd(3.0, 0.0, 3, 100, alpha=0.01) == pytest.approx(12.68, abs=0.01)  # SE units: 11.57 with the NaN bug
    assert mdd(3.0, 0.0, 3, 100) == pytest.approx(5.65, abs=0.01)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_declares_its_analysis_and_expands(path):
    import yaml

    exp = load_experiment(path)  # the analysis checked against the file's own rows, levels and endpoints
    jobs = load_suite(path)
    assert jobs and exp.get("claim") and exp.get("budget")
    a = exp["analysis"]
    if "aa" in a:
        assert len(exp["seeds"]) == 6 and len({j.recipe for j in jobs}) == 1
        return
    assert len(exp["seeds"]) >= 3 and a["primary"]["level"] in exp["knob"]["levels"]
    assert len({j.run.path for j in jobs}) == len(exp["recipes"]) * len(exp["knob"]["levels"]) * len(exp["seeds"])
    assert yaml.safe_load(path.read_text())["knob"]["default"] in exp["knob"]["levels"]
    gpu = load_experiment(path, "gpu")  # the GPU profile: at least as many levels and seeds, the same analysis
    assert len(gpu["seeds"]) >= len(exp["seeds"]) and set(map(str, exp["knob"]["levels"])) <= set(map(str, gpu["knob"]["levels"]))
    assert gpu["analysis"] == exp["analysis"] and len(load_suite(path, profile="gpu")) >= len(jobs)


def test_a_profile_replaces_the_suite_keys_it_names(tmp_path):
    import yaml

    from she_bench.config import ConfigError

    path = _experiment(tmp_path)
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "gpu": {"seeds": [0, 1, 2, 3], "overrides": {"train.max_steps": 7}}}))
    jobs = load_suite(path, profile="gpu")
    assert {j.seed for j in jobs} == {0, 1, 2, 3} and all(j.run.cfg.train.max_steps == 7 for j in jobs)
    assert {j.seed for j in load_suite(path)} == {0, 1, 2}  # without the profile the file is unchanged
    path.write_text(yaml.safe_dump({**doc, "gpu": {"analysis": {}}}))
    with pytest.raises(ConfigError, match="field 'gpu'"):  # the analysis is fixed: no profile may change it
        load_suite(path, profile="gpu")


# ----------------------------------------------------------------------------------------------------------------
# The analysis end to end on simulated runs: run folders at the paths ablate gives the experiment's jobs, with
# predictions drawn at known accuracies, so each verdict is known in advance.

def _experiment(tmp_path, seeds=(0, 1, 2), **analysis) -> Path:
    import yaml

    exp = {"name": "sim", "claim": "a simulated claim", "knob": {"key": "card.teacher_noise", "levels": [0.0, 0.5],
                                                               "default": 0.0},
           "recipes": ["grpo", "srpo", "warm-start", "sft-oracle", "srpo-shuffled"], "benchmarks": [CARD],
           "models": ["toy-1m"], "seeds": list(seeds), "budget": {"minutes": 1},
           "analysis": {"endpoint": "accuracy", "direction": "higher", "predicted_effect": 0.1, "margin": 0.03,
                        "margin_why": "a simulated margin",
                        "primary": {"variant": "srpo", "versus": "grpo", "level": 0.5},
                        "secondary_endpoints": ["wrong_reason_rate"],
                        "positive_control": {"variant": "sft-oracle", "versus": "warm-start", "level": 0.5},
                        "negative_control": {"variant": "srpo-shuffled", "versus": "grpo", "level": 0.0}, **analysis}}
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def _simulate(path: Path, root: Path, acc: dict, skip=(), twins=None, builds=None, experiments=None) -> None:
    """A finished run for each job: 150 queries x 4 pairs, right with probability acc[(recipe, level)] (default 0.6),
    a per-seed shift of sd 0.01; jobs in `skip` are left undone. srpo-shuffled repeats grpo's draws unless `acc`
    names it (a negative control with nothing to find); `twins` names more rows that repeat another's draws. Every
    row of a (level, seed) cell starts from one build unless `builds[(recipe, level, seed)]` names another."""
    import json
    import zlib

    import yaml

    from she_bench.ablate import load_suite

    for job in load_suite(path, str(root)):
        level = job.overrides.get("card.teacher_noise", 0.0)
        if (job.recipe, level, job.seed) in skip:
            continue
        twin = {"srpo-shuffled": "grpo", **(twins or {})}.get(job.recipe, job.recipe)
        twin = job.recipe if (job.recipe, level) in acc else twin
        rng = np.random.default_rng(zlib.crc32(repr((twin, level, job.seed)).encode()))
        p = acc.get((job.recipe, level), 0.6) + rng.normal(0, 0.01)
        preds = []
        for q in range(150):
            for i in range(4):
                right = rng.random() < p
                preds.append({"id": f"q{q}-{i}", "query_id": f"q{q}", "slices": ["head"], "gold": "Exact",
                              "pred": "Exact" if right else "Irrelevant", "entropy": 0.5,
                              "step_verdicts": {"category_matching": bool(rng.random() < 0.8)}})
        if (twins or {}).get(job.recipe) and (job.recipe, level) not in acc:  # a twin moves 2% of its labels, as RL does
            flip = np.random.default_rng(zlib.crc32(repr((job.recipe, level, job.seed)).encode())).random(len(preds)) < 0.02
            for pr, f in zip(preds, flip):
                if f:
                    pr["pred"] = "Irrelevant" if pr["pred"] == "Exact" else "Exact"
        d = job.run.path
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump({**job.run.cfg.to_dict(), "model": "toy-1m"}))
        build = (builds or {}).get((job.recipe, level, job.seed), f"cell-{level}-{job.seed}")
        (d / "manifest.json").write_text(json.dumps({"status": "done", "seed": job.seed, "name": job.run.cfg.name,
                                                     "method": job.run.cfg.method, "experiments": experiments or [],
                                                     "warm_start_hash": f"{build:0<64}"}))
        (d / "metrics.json").write_text(json.dumps({"overall": {}, "labels": ["Exact", "Irrelevant"],
                                                    "good_labels": ["Exact"]}))
        (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))


DETECTED = {("sft-oracle", 0.5): 0.85}


@pytest.mark.parametrize("acc, skip, twins, want", [
    ({("srpo", 0.5): 0.75, **DETECTED}, (), None, "supported"),
    ({("srpo", 0.5): 0.45, **DETECTED}, (), None, "contradicted"),
    (DETECTED, (), None, "inconclusive at this power"),
    (DETECTED, (), {"srpo": "grpo"}, "absent"),  # srpo is grpo with 2% of labels moved: a null shown equivalent to 0
    ({("srpo", 0.5): 0.75}, (), None, "unable to see"),  # the positive control fails: no verdict on the claim
    ({("srpo", 0.5): 0.75, **DETECTED}, [("grpo", 0.5, 2)], None, "incomplete"),  # a run not done: no verdict yet
], ids=["supported", "contradicted", "inconclusive", "absent", "unable-to-see", "incomplete"])
def test_verdicts_on_simulated_runs(tmp_path, acc, skip, twins, want):
    path = _experiment(tmp_path)
    _simulate(path, tmp_path / "runs", acc, skip, twins)
    (r,) = build_claims([path], tmp_path / "runs", n_boot=300)
    assert r["verdict"] == want, r["primary"]
    assert r["runs_done"] == 30 - len(skip) and r["runs_declared"] == 30
    if want == "incomplete":  # the estimate is still shown, marked provisional
        assert r["primary"]["seeds"] == [0, 1] and not r["primary"]["complete"]
        return
    assert r["negative_control"]["equivalent"] is True  # srpo-shuffled drawn as grpo: inside +-margin
    assert r["positive_control"]["detected"] is (want != "unable to see")
    assert 0 < r["primary"]["mdd"] <= r["primary"]["mdd_holm"] and len(r["levels"]) == 2 and r["interaction"][0]["status"] == "ok"
    assert {(x["row"], x["level"]) for x in r["row_means"]} >= {("srpo", 0.5), ("grpo", 0.5)}
    assert all(c["rows"]["grpo"] == f"cell-{c['level']}-{c['seed']}".ljust(12, "0") for c in r["builds"])


def test_a_negative_control_with_an_effect_withholds_the_verdict(tmp_path):
    path = _experiment(tmp_path)
    _simulate(path, tmp_path / "runs", {("srpo", 0.5): 0.75, ("srpo-shuffled", 0.0): 0.45, **DETECTED})
    (r,) = build_claims([path], tmp_path / "runs", n_boot=300)
    assert r["negative_control"]["equivalent"] is False and r["verdict"] == "negative control not equivalent"
    assert r["primary"]["p_holm"] < 0.05


def test_a_pair_across_builds_is_left_out_and_counted(tmp_path):
    path = _experiment(tmp_path)
    # seed 0's srpo at 0.5 started from another warm start than the rest of its cell
    _simulate(path, tmp_path / "runs", {("srpo", 0.5): 0.75, **DETECTED}, builds={("srpo", 0.5, 0): "other"})
    (r,) = build_claims([path], tmp_path / "runs", n_boot=300)
    p = r["primary"]
    assert p["cross_build_seeds"] == [0] and p["seeds"] == [1, 2] and not p["complete"]
    assert r["verdict"] == "incomplete"
    assert r["positive_control"]["seeds"] == [0, 1, 2]  # rows of one build are still paired
    cell = next(c for c in r["builds"] if c["level"] == 0.5 and c["seed"] == 0)
    assert cell["rows"]["srpo"] != cell["rows"]["grpo"]
    write_claims([r], tmp_path / "out", "she-bench claims ...")
    assert "1 left out: across builds" in (tmp_path / "out" / "sim.md").read_text()


def test_evidence_made_under_another_analysis_is_refused(tmp_path):
    from she_bench.ablate import analysis_hash
    from she_bench.config import ConfigError

    path = _experiment(tmp_path)
    _simulate(path, tmp_path / "runs", {}, experiments=[{"file": "sim.yaml", "analysis_hash": analysis_hash(path)}])
    build_claims([path], tmp_path / "runs", n_boot=50)  # made under this analysis: accepted
    import yaml

    doc = yaml.safe_load(path.read_text())
    doc["analysis"]["primary"]["level"] = 0.0  # the analysis changed after its runs
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="under analysis .* the file's analysis is now"):
        build_claims([path], tmp_path / "runs", n_boot=50)


def test_lines_without_a_build_get_one_inferred_from_label_agreement():
    from she_bench.report import evidence

    def line(rel, preds, seed=0, method="grpo"):
        return evidence.Evidence(rel, {"benchmark": "t", "model": "toy-1m", "seed": seed, "warm_start": {},
                                       "method": method}, ["A", "B"],
                                 [], [{"id": str(i), "query_id": str(i // 4), "gold": "A", "pred": p}
                                      for i, p in enumerate(preds)], None, [])

    rng = np.random.default_rng(0)
    one = rng.choice(["A", "B"], 400)
    two = rng.choice(["A", "B"], 400)  # another build: agrees with the first on about half the labels

    def moved(base, share):  # an RL row: its warm start's labels, a few changed
        out = base.copy()
        idx = rng.choice(400, int(share * 400), replace=False)
        out[idx] = np.where(out[idx] == "A", "B", "A")
        return out

    ev = {"x/ws": line("x/ws", one), "x/grpo": line("x/grpo", moved(one, 0.03)), "x/srpo": line("x/srpo", moved(one, 0.04)),
          "x/she": line("x/she", moved(two, 0.02)), "x/she2": line("x/she2", moved(two, 0.03)),
          "x/sft": line("x/sft", moved(one, 0.3), method="sft"), "x/lone-ws": line("x/lone-ws", moved(two, 0.3), method="none"),
          "x/other-seed": line("x/other-seed", one, seed=1, method="sft")}
    evidence.infer_builds(ev)
    ids = {rel: e.build["id"] for rel, e in ev.items()}
    assert all(e.build["inferred"] for e in ev.values())
    assert ids["x/ws"] == ids["x/grpo"] == ids["x/srpo"] != ids["x/she"] == ids["x/she2"]
    assert ids["x/sft"].startswith("undetermined-") and ids["x/ws"].startswith("inferred-")
    assert ids["x/other-seed"].startswith("undetermined-")  # another seed is another cell
    assert ids["x/lone-ws"].startswith("inferred-") and ids["x/lone-ws"] not in (ids["x/ws"], ids["x/she"])  # a build of its own


def test_a_folder_of_another_build_is_reported_not_merged_unless_its_whole_cell_ran_again(tmp_path, capsys):
    from she_bench.report import evidence

    path = _experiment(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "out"
    _simulate(path, runs, {("srpo", 0.5): 0.75, **DETECTED})
    assert _claims_cli(path, runs, out) == 0
    first = evidence.load(out / "evidence.jsonl.xz")
    # one row of seed 0 at 0.5 re-run on another build: reported, its line kept
    import shutil

    shutil.rmtree(runs)
    _simulate(path, runs, {("srpo", 0.5): 0.75, **DETECTED}, builds={("srpo", 0.5, 0): "other"},
              skip=[(r, lv, s) for r in ("grpo", "srpo", "warm-start", "sft-oracle", "srpo-shuffled")
                    for lv in (0.0, 0.5) for s in (0, 1, 2) if (r, lv, s) != ("srpo", 0.5, 0)])
    capsys.readouterr()
    assert _claims_cli(path, runs, out) == 0
    err = capsys.readouterr().err
    assert "not merged" in err and "srpo-toy-1m-s0" in err or "srpo_teacher_noise=0.5-toy-1m-s0" in err
    after = evidence.load(out / "evidence.jsonl.xz")
    assert {r: e.build for r, e in after.items()} == {r: e.build for r, e in first.items()}  # nothing replaced, nothing lost
    assert "Run folders not merged" in (out / "summary.md").read_text()
    # the whole cell (every row of seed 0 at 0.5) re-run on one new build: it replaces the cell's lines
    shutil.rmtree(runs)
    cell = [(r, 0.5, 0) for r in ("grpo", "srpo", "warm-start", "sft-oracle", "srpo-shuffled")]
    _simulate(path, runs, {("srpo", 0.5): 0.75, **DETECTED}, builds={k: "new" for k in cell},
              skip=[(r, lv, s) for r in ("grpo", "srpo", "warm-start", "sft-oracle", "srpo-shuffled")
                    for lv in (0.0, 0.5) for s in (0, 1, 2) if (r, lv, s) not in cell])
    assert _claims_cli(path, runs, out) == 0
    after = evidence.load(out / "evidence.jsonl.xz")
    changed = {r for r in after if after[r].build != first[r].build}
    assert len(changed) == 5 and all("0.5" in r and "-s0-" in r for r in changed) and len(after) == len(first)


def test_ablate_keeps_each_cell_on_one_build(tmp_path, capsys, monkeypatch):
    from she_bench.ablate import on_one_build
    from she_bench.report import evidence

    path = _experiment(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "out"
    _simulate(path, runs, {}, builds={("srpo", 0.5, 1): "other"})  # seed 1 at 0.5 mixes two builds
    assert _claims_cli(path, runs, out) == 0
    lines = evidence.load(out / "evidence.jsonl.xz")
    del lines[next(r for r in lines if "grpo_teacher_noise=0.5-toy-1m-s2" in r)]  # one row missing at seed 2
    jobs = load_suite(path, str(runs))
    monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path / "cache"))  # no warm start at hand
    todo, notes = on_one_build(jobs, lines)
    cells = {(j.seed, j.overrides.get("card.teacher_noise", 0.0)) for j in todo}
    assert cells == {(1, 0.5), (2, 0.5)} and len(todo) == 10 and len(notes) == 2  # each runs again whole
    assert any("mixes builds" in n for n in notes) and any("not at hand" in n for n in notes)
    # with seed 2's warm start at hand, only its missing row runs, from that build
    ws = tmp_path / "cache" / "warm_start" / "cell" / "final"
    ws.mkdir(parents=True)
    import json

    (ws.parent / "build.json").write_text(json.dumps({"weights_hash": "cell-0.5-2".ljust(64, "0")}))
    todo, _ = on_one_build(jobs, lines)
    seed2 = [j for j in todo if j.seed == 2]
    assert len(seed2) == 1 and seed2[0].recipe == "grpo" and seed2[0].warm_start_hash == "cell-0.5-2".ljust(64, "0")
    assert "--warm-start-hash" in seed2[0].command()


def test_claims_pages_regenerate_byte_identical(tmp_path):
    path = _experiment(tmp_path)
    _simulate(path, tmp_path / "runs", {("srpo", 0.5): 0.75, **DETECTED})
    outs = []
    for name in ("a", "b"):
        write_claims(build_claims([path], tmp_path / "runs", n_boot=200), tmp_path / name, "she-bench claims ...")
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert outs[0] == outs[1]
    assert {"claims.json", "summary.md", "sim.md", "sim.png", "summary.png", "index.html"} <= set(outs[0])
    page = outs[0]["sim.md"].decode()
    assert "Verdict: supported" in page and "oracle GRM" in page and "Controls" in page


def _claims_cli(path: Path, runs: Path, out: Path) -> int:
    from she_bench.cli import main

    return main(["claims", "--experiments", str(path), "--runs", str(runs), "--out", str(out), "--bootstrap", "200"])


def test_the_report_regenerates_from_its_evidence_without_the_run_folders(tmp_path, capsys):
    import shutil

    path = _experiment(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "out"
    _simulate(path, runs, {("srpo", 0.5): 0.75, **DETECTED})
    assert _claims_cli(path, runs, out) == 0
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert "evidence.jsonl.xz" in first and "30 from their folders" in capsys.readouterr().out
    # half the folders gone, then all of them: the same report, byte for byte, and no line lost
    for d in sorted(runs.glob("*/*"))[::2]:
        shutil.rmtree(d)
    assert _claims_cli(path, runs, out) == 0
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == first
    shutil.rmtree(runs)
    assert _claims_cli(path, runs, out) == 0
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == first
    assert "0 from their folders" in capsys.readouterr().out.splitlines()[-2]
    # and ablate leaves out the runs the evidence holds
    from she_bench.cli import main

    assert main(["ablate", "--suite", str(path), "--output-dir", str(runs), "--dry-run",
                 "--evidence", str(out / "evidence.jsonl.xz")]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [f"30 of 30 runs left out: their evidence is in "
                                                         f"{out / 'evidence.jsonl.xz'}", "0 runs"]


def test_a_finished_run_folder_replaces_its_evidence_line(tmp_path):
    import json

    from she_bench.report import evidence
    from she_bench.report.claims import RunIndex

    path = _experiment(tmp_path)
    runs = tmp_path / "runs"
    _simulate(path, runs, {})
    index = RunIndex(runs)
    build_claims([path], index, n_boot=50)
    stale = {rel: evidence.Evidence(**{**vars(ev), "predictions": ev.predictions[:1]})
             for rel, ev in index.evidence.items()}
    fresh = RunIndex(runs, evidence=stale)
    build_claims([path], fresh, n_boot=50)
    assert fresh.sources() == (30, 0)
    assert all(len(ev.predictions) == 600 for ev in fresh.evidence.values())
    evidence.write(fresh.evidence, tmp_path / "e.jsonl.xz")
    back = evidence.load(tmp_path / "e.jsonl.xz")
    assert {r: json.dumps(vars(e), sort_keys=True) for r, e in back.items()} == \
        {r: json.dumps(vars(e), sort_keys=True) for r, e in fresh.evidence.items()}


@pytest.mark.parametrize("damage, match", [
    (lambda text: b"not xz at all", "not a readable evidence.jsonl.xz file"),
    (lambda text: text[:len(text) // 2], "not a readable evidence.jsonl.xz file"),  # cut short
    (lambda text: lzma_text(text, lambda t: t.replace('{"config"', '{"config" oops', 1)), "line 1: invalid JSON"),
    (lambda text: lzma_text(text, lambda t: t.replace('"labels":', '"labelz":', 1)), "line 1, field 'labels': missing"),
    (lambda text: lzma_text(text, lambda t: t.replace('"query_id":', '"query":', 1)),
     "prediction 0, field 'query_id': missing"),
])
def test_a_damaged_evidence_file_is_one_error_naming_where(tmp_path, capsys, damage, match):
    from she_bench.report import evidence

    path, out = _experiment(tmp_path), tmp_path / "out"
    ev = out / "evidence.jsonl.xz"
    pred = {"id": "q0-0", "query_id": "q0", "gold": "Exact", "pred": "Exact", "entropy": 0.123456}
    evidence.write({"toyshop/x": evidence.Evidence("toyshop/x", {"config": 1}, ["Exact"], [], [pred], None, [])}, ev)
    assert evidence.load(ev)["toyshop/x"].predictions == [{**pred, "entropy": 0.123456}]
    ev.write_bytes(damage(ev.read_bytes()))
    capsys.readouterr()
    assert _claims_cli(path, tmp_path / "runs", out) == 2
    err = capsys.readouterr().err
    assert str(ev) in err and match in err and len(err.strip().splitlines()) == 1


def lzma_text(data: bytes, edit) -> bytes:
    import lzma

    return lzma.compress(edit(lzma.decompress(data).decode()).encode())


def test_aa_counts_significant_splits(tmp_path):
    import yaml

    path = tmp_path / "aa.yaml"
    path.write_text(yaml.safe_dump({"name": "aa", "claim": "A/A", "recipes": ["grpo"], "benchmarks": [CARD],
                                    "models": ["toy-1m"], "seeds": [0, 1, 2, 3, 4, 5],
                                    "analysis": {"aa": {"variant": "grpo", "endpoints": ["accuracy"]}}}))
    _simulate(path, tmp_path / "runs", {})
    (r,) = build_claims([path], tmp_path / "runs", n_boot=300)
    aa = r["aa"]["accuracy"]
    assert aa["splits"] == 10 and 0 <= aa["significant"] <= 10
    assert all(len(x["a"]) == 3 and 0 in x["a"] for x in aa["results"])


@pytest.mark.parametrize("field, value, match", [
    ("direction", "up", "analysis.direction"),
    ("endpoint", "speed", "analysis.endpoint"),
    ("primary", {"variant": "srpo", "versus": "dpo", "level": 0.5}, "analysis.primary"),
    ("primary", {"variant": "srpo", "versus": "grpo", "level": 0.9}, "analysis.primary.level"),
])
def test_a_malformed_analysis_is_refused_naming_the_field(tmp_path, field, value, match):
    from she_bench.config import ConfigError

    path = _experiment(tmp_path, **{field: value})
    with pytest.raises(ConfigError, match=match):
        load_experiment(path)


def test_a_fixed_verifier_list_cannot_override_the_annotation_knob(tmp_path, capsys):
    from she_bench.cli import main

    assert main(["run", "--method", "she", "--benchmark", CARD, "--output-dir", str(tmp_path),
                 "card.annotation_share=0.25"]) == 2
    assert "reward.verifier_steps: expected null while the card's annotation_share" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was built


def test_the_data_card_counts_the_knobs():
    from she_bench.data.describe import describe, format_card

    bench = load_benchmark(CARD, overrides={"rationale_share": 1.0, "teacher_noise": 0.5, "annotation_share": 0.5})
    train = bench.splits["train"]
    card = describe(bench)["splits"]["train"]
    noisy = [ex for ex in train if ex.teacher]
    assert card["teacher_noise"]["pairs"] == len(noisy) == round(0.5 * len(train))
    assert sum(card["teacher_noise"]["how"].values()) == len(noisy)
    assert card["teacher_noise"]["steps"]["item_understanding"] <= len(noisy)
    assert card["annotation"]["pairs"] == sum(ex.annotated for ex in train) == round(0.5 * len(train))
    text = format_card(describe(bench))
    assert "released rationales corrupted" in text and "the verifier knows the steps of" in text
    assert "teacher_noise" not in describe(load_benchmark(CARD))["splits"]["train"]  # absent at the default


def test_the_readme_quotes_only_figures_of_the_generated_claims_pages():
    """Every estimate with an interval that the README's claim section quotes is printed on a generated page
    (reports/claims/*.md, reports/aa-size.md), so the README cannot drift from the reports."""
    import re

    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Claim experiments"):readme.index("## Scale out")]
    pages = "".join(p.read_text() for p in sorted((root / "reports" / "claims").glob("*.md")))
    pages += (root / "reports" / "aa-size.md").read_text()
    number = r"[+-]?\d+\.\d+"
    quoted = re.findall(rf"{number} \[{number}, {number}\]", section)
    assert len(quoted) >= 5
    assert [q for q in quoted if q not in pages] == []


def test_a_rebuild_that_reproduces_a_line_names_the_build_of_its_inferred_cluster(tmp_path):
    import shutil

    from she_bench.report import evidence

    path = _experiment(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "out"
    twins = {"grpo": "warm-start", "srpo": "warm-start", "srpo-shuffled": "warm-start"}  # RL rows near their start
    _simulate(path, runs, DETECTED, twins=twins)
    assert _claims_cli(path, runs, out) == 0
    old = evidence.load(out / "evidence.jsonl.xz")
    for ev in old.values():  # lines made before builds were recorded
        ev.build = None
    evidence.infer_builds(old)
    evidence.write(old, out / "evidence.jsonl.xz")
    shutil.rmtree(runs)
    # the warm-start row of seed 0 at 0.5 rebuilt: the same labels, a recorded build
    rows = ("grpo", "srpo", "warm-start", "sft-oracle", "srpo-shuffled")
    _simulate(path, runs, DETECTED, twins=twins,
              skip=[(r, lv, s) for r in rows for lv in (0.0, 0.5) for s in (0, 1, 2) if (r, lv, s) != ("warm-start", 0.5, 0)])
    assert _claims_cli(path, runs, out) == 0
    after = evidence.load(out / "evidence.jsonl.xz")
    ws = next(r for r in after if "warm-start_teacher_noise=0.5-toy-1m-s0" in r)
    cluster = old[ws].build["id"]
    linked = [r for r in after if old[r].build["id"] == cluster]
    assert len(linked) == 4 and all(after[r].build["id"] == "cell-0.5-0".ljust(12, "0") for r in linked)
    assert not after[ws].build["inferred"]  # the rebuilt row itself: its recorded build
    assert all(after[r].build["linked_by"] == ws and after[r].build["inferred"] for r in linked if r != ws)
    assert all(after[r].build == old[r].build for r in after if r not in linked)  # other cells untouched
