"""Reports from synthetic run directories (no training): tables, paired tests, skipped runs,
determinism, the HTML page."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import yaml

from she_bench.config import WarmStartConfig
from she_bench.data.schema import ESCI_LABELS, STEPS
from she_bench.evaluation.entropy import training_entropy
from she_bench.evaluation.metrics import compute_metrics
from she_bench.report import build_report
from she_bench.report.plots import PLOTS
from she_bench.report.tables import fnum

LABELS = list(ESCI_LABELS)
GOOD = ["Exact", "Substitute"]
SLICES = ["head", "tail", "type:brand", "type:plain"]
N_QUERIES, PER_QUERY = 40, 5
N_BOOT = 200


def examples():
    rng = np.random.default_rng(123)
    out = []
    for q in range(N_QUERIES):
        part = "head" if q < 28 else "tail"
        qtype = "type:brand" if q % 3 == 0 else "type:plain"
        for j in range(PER_QUERY):
            out.append({"id": f"q{q}-{j}", "query_id": f"q{q}", "slices": [part, qtype],
                        "gold": LABELS[int(rng.integers(len(LABELS)))]})
    return out


def predictions(skill: float, seed: int) -> list[dict]:
    """Each example right with probability `skill` (same draws for the same seed and skill)."""
    rng = np.random.default_rng(1000 + seed)
    recs = []
    for ex in examples():
        u, wrong, v = rng.random(), rng.integers(1, len(LABELS)), rng.random(len(STEPS))
        right = u < skill
        pred = ex["gold"] if right else LABELS[(LABELS.index(ex["gold"]) + int(wrong)) % len(LABELS)]
        if not right and u > 0.97:
            pred = None
        recs.append({**ex, "pred": pred, "format_valid": pred is not None, "judgment": pred,
                     "step_verdicts": {s: bool(x < skill + 0.1) for s, x in zip(STEPS, v)},
                     "entropy": round(0.5 + 0.1 * seed + 0.2 * float(rng.random()), 4)})
    return recs


def train_log(method: str, seed: int, steps: int = 20) -> list[dict]:
    log = [{"stage": "warm_start", "step": s, "loss": 2.0 - 0.1 * s, "entropy": 3.0} for s in range(1, 4)]
    if method == "sft":
        return log + [{"stage": "main", "method": "sft", "step": s, "loss": 1.0 / s, "entropy": 1.0 - 0.01 * s}
                      for s in range(1, steps + 1)]
    log.append({"stage": "main", "event": "stage_start", "method": method})
    for s in range(1, steps + 1):
        rec = {"stage": "main", "method": method, "step": s, "loss": 0.1, "reward_mean": 0.3 + 0.02 * s + 0.01 * seed,
               "reward_std": 0.2, "entropy": 1.2 * (0.97 if method == "grpo" else 0.995) ** s, "kl": 0.001 * s}
        if method == "srpo":
            rec["step_reward/query_understanding"] = 0.8
        log.append(rec)
    return log


def write_run(root, name: str, method: str, seed: int, skill: float, status: str = "done"):
    path = root / "toyshop" / f"{name}-toy-1m-s{seed}-abc{seed}{name}"
    path.mkdir(parents=True)
    cfg = {"name": name, "method": method, "benchmark": "toyshop", "model": "toy-1m", "seed": seed}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    manifest = {"name": name, "method": method, "seed": seed, "config_hash": f"hash-{name}-{seed}",
                "versions": {"python": "3.12.0", "torch": "2.13.0", "transformers": "5.24.0", "trl": "1.16.0"},
                "git": {"commit": "0123456789abcdef0123", "dirty": False}, "data_hash": "d" * 64,
                "base_model_hash": "b" * 64, "warm_start": "cache/warm_start/final", "warm_start_hash": "w" * 64, "final_model_hash": f"f{seed}" * 32,
                "status": status, "total_seconds": 12.5 + seed, "eval_seconds": 2.0, "train_seconds": 9.0}
    (path / "manifest.json").write_text(json.dumps(manifest))
    log = train_log(method, seed)
    (path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    if status != "done":
        return path
    recs = predictions(skill, seed)
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    metrics = compute_metrics(recs, LABELS, GOOD, SLICES, n_boot=50, seed=seed)
    metrics["split"] = "test"
    metrics["training_entropy"] = training_entropy(log)
    metrics["budget"] = {"optimizer_steps": 150, "prompts_seen": 1200, "tokens_generated": 600_000, "tokens_trained": 90_000,
                         "total_seconds": 240.0}
    if method == "srpo":  # what a run measures of its GRM (evaluation/grm_quality.py)
        rates = {"n": 100, "wrong": 40, "flagged": 30, "accuracy": 0.8 + 0.1 * seed, "precision_wrong": 0.9,
                 "recall_wrong": 0.6 + 0.1 * seed}
        metrics["grm_agreement"] = {"grm": "oracle (error 0.1)", "overall": rates, "steps": {s: rates for s in STEPS},
                                    "step_accuracy_grm": {s: 0.7 for s in STEPS}}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        dirs.append(write_run(root, "grpo", "grpo", seed, 0.55))
        dirs.append(write_run(root, "sft", "sft", seed, 0.55))  # same predictions as grpo
        dirs.append(write_run(root, "srpo", "srpo", seed, 0.9))
    dirs.append(write_run(root, "srpo", "srpo", 2, 0.9, status="running"))
    return root, dirs


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    root, dirs = runs
    out = tmp_path_factory.mktemp("report-a")
    data = build_report(dirs, out, n_boot=N_BOOT, seed=0, command=["she-bench", "report", "runs/"],
                        primary=[("srpo", "grpo"), ("she", "srpo")])
    return out, data


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tables_have_every_variant_and_right_mean(runs, report):
    root, _ = runs
    out, data = report
    for stem in ("summary", "slices", "steps", "entropy"):
        for ext in ("md", "csv", "tex", ):
            text = (out / f"{stem}.{ext}").read_text()
            for name in ("grpo", "srpo", "sft"):
                assert name in text, (stem, ext, name)
    # hand-check: srpo overall accuracy = mean of its two seeds' metrics.json values
    accs = [json.loads(next((root / "toyshop").glob(f"srpo-toy-1m-s{s}-*/metrics.json")).read_text())
            ["overall"]["accuracy"]["value"] for s in (0, 1)]
    mean, std = (accs[0] + accs[1]) / 2, abs(accs[0] - accs[1]) / np.sqrt(2)
    row = next(r for r in read_csv(out / "summary.csv") if r["variant"] == "srpo")
    assert row["n_seeds"] == "2" and row["seeds"] == "0, 1"
    assert float(row["accuracy_mean"]) == pytest.approx(mean, abs=1e-4)
    assert float(row["accuracy_std"]) == pytest.approx(std, abs=1e-4)
    md_row = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| toyshop | srpo"))
    assert f"{mean:.3f} ± {std:.3f} [" in md_row
    # baseline first, then alphabetical
    assert [r["variant"] for r in read_csv(out / "summary.csv")] == ["grpo", "sft", "srpo"]
    # LaTeX escapes the underscore of metric keys in slice names and the ± sign
    tex = (out / "summary.tex").read_text()
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex and "±" not in tex
    # every slice present
    slices = {r["slice"] for r in read_csv(out / "slices.csv")}
    assert slices == set(SLICES)
    assert data["summary"][0]["accuracy"]["overall"]["interval"] == "seeds+queries"


def test_missing_value_is_na_not_zero(report):
    out, _ = report
    sft = next(r for r in read_csv(out / "entropy.csv") if r["variant"] == "sft")
    assert sft["train_initial_mean"] != "n/a"  # sft logs entropy
    # grpo logged a step reward nowhere; per-step GRM accuracy is absent: n/a in the data, never 0
    steps = next(r for r in json.loads((out / "report.json").read_text())["steps"] if r["variant"] == "grpo")
    assert steps["step_accuracy_grm"]["query_understanding"]["mean"] is None
    assert fnum(None) == "n/a" and fnum(-0.0001) == "0.000"


def test_comparisons_primary_and_exploratory(report):
    out, data = report
    rows = {(r["variant"], r["versus"]): r for r in data["comparisons"]}
    assert set(rows) == {("srpo", "grpo"), ("sft", "grpo")}
    assert rows[("srpo", "grpo")]["family"] == "primary" and rows[("sft", "grpo")]["family"] == "exploratory"
    assert "primary comparison she vs srpo not run (she missing)" in data["comparison_notes"][0]
    same = rows[("sft", "grpo")]["results"]  # identical predictions
    for key in ("accuracy/overall", "macro_f1/overall", "macro_f1/tail"):
        assert same[key]["diff"]["mean"] == 0 and same[key]["p_value"] == 1.0
    better = rows[("srpo", "grpo")]["results"]["accuracy/overall"]
    # two seed pairs leave the seed variance one degree of freedom: a 0.3 gain is not yet significant
    assert better["diff"]["mean"] > 0.2 and better["df"] < 2 and 0.01 < better["p_value"] < 0.2
    assert better["diff"]["lo"] < 0 < better["diff"]["hi"] and better["diff"]["interval"] == "seeds+queries"
    # Holm over the primary family's three metrics: the adjusted p is at least the raw one, at most 3x
    primary = [rows[("srpo", "grpo")]["results"][k] for k in ("accuracy/overall", "macro_f1/overall", "macro_f1/tail")]
    for res in primary:
        assert res["p_value"] <= res["p_holm"] <= min(1.0, 3 * res["p_value"]) + 1e-12
    assert min(r["p_holm"] for r in primary) == pytest.approx(3 * min(r["p_value"] for r in primary), rel=1e-3)
    assert rows[("srpo", "grpo")]["seeds_a"] == [0, 1] and rows[("srpo", "grpo")]["pairing"] == "seed"
    csv_rows = {r["variant"]: r for r in read_csv(out / "comparisons.csv")}
    assert csv_rows["sft"]["diff_accuracy_mean"] == "0.0000" and csv_rows["sft"]["p_accuracy"] == "1.000000"
    md = (out / "comparisons.md").read_text()
    assert f"query bootstrap of {N_BOOT} resamples" in md and "Holm" in md
    assert "| toyshop | srpo | grpo | primary |" in md


def test_significance_mark_with_enough_seeds(tmp_path):
    dirs = [write_run(tmp_path, name, name, seed, skill) for seed in range(5) for name, skill in (("grpo", 0.55), ("srpo", 0.9))]
    data = build_report(dirs, tmp_path / "out", n_boot=N_BOOT, primary=[("srpo", "grpo")])
    (row,) = data["comparisons"]
    res = row["results"]["accuracy/overall"]
    assert res["diff"]["lo"] > 0 and res["p_holm"] < 0.05 and res["significant"]
    line = next(x for x in (tmp_path / "out" / "comparisons.md").read_text().splitlines() if "| srpo | grpo |" in x)
    assert " *" in line


def test_one_seed_power_is_a_labelled_lower_bound(tmp_path):
    """One seed: the seed variance is unmeasured, so the power line counts queries alone and says so."""
    dirs = [write_run(tmp_path, name, name, 0, skill) for name, skill in (("grpo", 0.55), ("srpo", 0.6))]
    data = build_report(dirs, tmp_path / "out", n_boot=N_BOOT, primary=[("srpo", "grpo")])
    (acc,) = [r for r in data["power"] if r["metric"] == "accuracy"]
    res = data["comparisons"][0]["results"]["accuracy/overall"]
    assert acc["seeds"] == 1 and not acc["seed_var_measured"] and acc["seed_var"] is None
    assert acc["seeds_for_target"] is None and acc["n_queries"] == N_QUERIES
    assert acc["query_var"] == pytest.approx(res["query_var"], rel=1e-6) and acc["mdd"] > 2 * res["query_var"] ** 0.5
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "with one seed the seed variance is not measured" in summary and "lower bound" in summary
    assert "(lower bound)" in (tmp_path / "out" / "power.md").read_text()


def test_power_budget_and_legend(report):
    out, data = report
    power = {r["metric"] + "/" + r["subset"]: r for r in data["power"]}
    assert set(power) == {"accuracy/overall", "macro_f1/overall", "macro_f1/tail"}
    acc = power["accuracy/overall"]
    assert acc["seeds"] == 2 and acc["comparisons"] == 1 and acc["mdd"] > 0
    assert "smallest difference detected with 80% power" in (out / "summary.md").read_text()
    assert (out / "power.md").exists() and (out / "legend.md").exists()
    legend = {r["variant"]: r for r in data["legend"]}
    assert legend["srpo"]["grm"] == "oracle (error 0.1)" and legend["grpo"]["grm"] is None
    assert legend["srpo"]["grm_steps"] == [] and legend["srpo"]["verifier_steps"] == ["QU", "IU", "CM", "AM"]
    assert legend["grpo"]["outcome"].startswith("format=gate") and legend["sft"]["outcome"] is None
    assert legend["grpo"]["warm_start"] == f"{float(WarmStartConfig().epochs)} epochs, lr 0.002"
    summary = {r["variant"]: r for r in read_csv(out / "summary.csv")}
    assert summary["grpo"]["budget_optimizer_steps"] == "150.0"
    assert "150 st · 1200 pr" in (out / "summary.md").read_text()


def test_warm_start_budget_where_the_run_trained_it(tmp_path):
    """The warm start's steps and tokens are counted apart, from the train log's 'trained' event, also for
    metrics written before the budget had them; a run that took its warm start from the cache shows none."""
    from she_bench.runs import run_budget

    trained = {"stage": "warm_start", "event": "trained", "method": "none", "steps": 51, "prompts_per_step": 8,
               "completions_per_prompt": 1, "num_tokens": 94852}
    assert run_budget([trained], {})["warm_start_steps"] == 51 and run_budget([], {})["warm_start_steps"] is None
    own = write_run(tmp_path, "warm-start", "none", 0, 0.6)
    with open(own / "train_log.jsonl", "a") as f:
        f.write(json.dumps(trained) + "\n")
    cached = write_run(tmp_path, "grpo", "grpo", 0, 0.6)
    build_report([own, cached], tmp_path / "out", n_boot=N_BOOT, baseline="warm-start")
    rows = {line.split(" | ")[1]: line for line in (tmp_path / "out" / "summary.md").read_text().splitlines()
            if line.startswith("| toyshop |")}
    assert "(warm start: 51 st · 95k tr)" in rows["warm-start"] and "warm start:" not in rows["grpo"]
    budget = {r["variant"]: r for r in read_csv(tmp_path / "out" / "summary.csv")}
    assert budget["warm-start"]["budget_warm_start_steps"] == "51.0"


def test_running_run_is_skipped_and_listed(report):
    out, data = report
    assert len(data["runs"]) == 6
    assert [s["path"] for s in data["skipped"]] == ["srpo-toy-1m-s2-abc2srpo"]
    assert data["skipped"][0]["status"] == "running" and "not 'done'" in data["skipped"][0]["reason"]
    prov = (out / "provenance.md").read_text()
    assert "srpo-toy-1m-s2-abc2srpo" in prov and "running" in prov
    assert "0123456789ab" in prov and "2.13.0" in prov
    srpo = next(r for r in data["summary"] if r["variant"] == "srpo")
    assert srpo["seeds"] == [0, 1]


def test_deterministic(runs, report, tmp_path):
    _, dirs = runs
    out_a, data = report
    out_b = tmp_path / "b"
    build_report(list(reversed(dirs)), out_b, n_boot=N_BOOT, seed=0, command=["she-bench", "report", "runs/"],
                 primary=[("srpo", "grpo"), ("she", "srpo")])
    files_a = sorted(p.name for p in out_a.iterdir())
    assert files_a == sorted(p.name for p in out_b.iterdir()) == data["files"]
    for name in files_a:
        assert (out_a / name).read_bytes() == (out_b / name).read_bytes(), name


def test_html_is_self_contained(report):
    out, data = report
    page = (out / "index.html").read_text()
    for plot in PLOTS:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert re.search(rf'alt="{re.escape(plot)}" src="data:image/png;base64,[A-Za-z0-9+/=]+"', page), plot
    for table in ("summary", "comparisons", "power", "legend", "slices", "steps", "entropy", "provenance", "skipped"):
        assert f'id="table-{table}"' in page, table
    assert "she-bench report runs/" in page and "toyshop" in page
    assert not re.search(r'(href|src)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page


def test_curves_use_method_stages_only(runs):
    from she_bench.report.aggregate import curve, method_log
    from she_bench.report.collect import collect, group

    _, dirs = runs
    groups = group(collect(dirs)[0])
    log = groups[("toyshop", "grpo")][0].train_log
    steps = [x for x, _ in method_log(log)]
    assert steps == list(range(1, 21))  # warm start lines and the stage marker dropped
    xs, ys = curve(groups[("toyshop", "grpo")], "reward_mean")
    assert ys[0] == pytest.approx(0.3 + 0.02 + 0.005)  # mean over seeds 0 and 1
    assert curve(groups[("toyshop", "sft")], "reward_mean") is None


def test_curriculum_stages_laid_end_to_end():
    from she_bench.report.aggregate import method_log

    log = [{"stage": "warm_start", "step": 1, "entropy": 3.0},
           {"stage": "1:head", "event": "stage_start"},
           *({"stage": "1:head", "step": s, "entropy": 1.0} for s in (1, 2, 3)),
           {"stage": "1:head", "step": 3, "entropy": 0.9},  # logged again after a resume: the last line wins
           {"stage": "2:tail", "event": "stage_start"},
           *({"stage": "2:tail", "step": s, "entropy": 0.5} for s in (1, 2))]
    got = [(x, r["stage"], r["entropy"]) for x, r in method_log(log)]
    assert got == [(1, "1:head", 1.0), (2, "1:head", 1.0), (3, "1:head", 0.9), (4, "2:tail", 0.5), (5, "2:tail", 0.5)]


def test_one_seed_folder_input_and_missing_baseline(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "she", "she", 0, 0.7).rename(root / "toyshop" / "she-copy")
    write_run(root, "she", "she", 0, 0.8)  # same variant and seed: not a replicate
    out = tmp_path / "out"
    data = build_report([root], out, baseline="grpo", n_boot=50)
    row = data["summary"][0]
    assert row["variant"] == "she" and row["n_seeds"] == 1
    acc = row["accuracy"]["overall"]
    assert acc["interval"] == "queries" and acc["std"] is None and acc["lo"] is not None
    assert [s["path"] for s in data["skipped"]] == ["she-toy-1m-s0-abc0she"]
    assert "duplicate of she-copy" in data["skipped"][0]["reason"]
    assert data["comparisons"] == [] and "baseline 'grpo' not among" in data["comparison_notes"][0]
    assert "baseline 'grpo' not among" in (out / "comparisons.md").read_text()
    md = (out / "summary.md").read_text()
    assert f"| {acc['mean']:.3f} [{acc['lo']:.3f}, {acc['hi']:.3f}] |" in md  # no std with one seed


def test_grm_quality_table_and_grm_column(report):
    out, data = report
    (row,) = data["grm"]
    assert row["variant"] == "srpo" and row["grm"] == "oracle (error 0.1)" and row["n_seeds"] == 2
    assert row["overall"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert row["steps"]["query_understanding"]["recall_wrong"]["mean"] == pytest.approx(0.65)
    summary = {r["variant"]: r["grm"] for r in read_csv(out / "summary.csv")}
    assert summary == {"grpo": "n/a", "sft": "n/a", "srpo": "oracle (error 0.1)"}
    assert "GRM quality" in (out / "index.html").read_text()


def test_report_prints_every_skipped_run_and_its_reason(tmp_path, capsys):
    from she_bench.cli import main

    good = write_run(tmp_path / "runs", "grpo", "grpo", 0, 0.55)
    corrupt = write_run(tmp_path / "runs", "srpo", "srpo", 0, 0.9)
    (corrupt / "metrics.json").write_text('{"overall": ')
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--bootstrap", "50"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {corrupt.name}: metrics.json: not valid JSON (line 1: Expecting value)" in err, err
    assert good.name not in err


def test_report_without_a_reportable_run_is_an_error(tmp_path, capsys):
    from she_bench.cli import main

    corrupt = write_run(tmp_path / "runs", "srpo", "srpo", 0, 0.9)
    (corrupt / "metrics.json").write_text("not json")
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"skipped {corrupt.name}: metrics.json: not valid JSON")
    assert len(lines) == 2 and lines[1].startswith("she-bench: error: no finished run to report in ")
    assert "1 run directory skipped" in lines[1]
    assert not (tmp_path / "out").exists()  # nothing written
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no run directory found" in capsys.readouterr().err
