"""End-to-end runs of every method with a tiny budget, GRPO/SRPO loss equivalence, resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

nan = float("nan")

from she_bench.cli import main

CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")
TINY = ["warm_start.epochs=1", "warm_start.batch_size=16", "train.max_steps=2", "train.prompts_per_step=2",
        "train.save_steps=1", "train.dpo_samples=2", "train.dpo_max_pairs=8", "rl.group_size=4",
        "rl.max_completion_length=24", "eval.max_new_tokens=24", "eval.batch_size=16", "eval.bootstrap=20"]


def run_dir(out: Path, method: str) -> Path:
    (path,) = (out / "toyshop-tiny").glob(f"{method}-*")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("method", ["warm-start", "sft", "sft-matched", "dpo", "grpo", "srpo", "srpo-exact"])
def test_method_runs_end_to_end(tmp_path, method):
    assert main(["run", "--method", method, "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY]) == 0
    path = run_dir(tmp_path, method)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["name"] == method
    # (an RL run whose groups all score alike gets no gradient, so the weights may equal the warm start's)
    assert manifest["warm_start_hash"] and manifest["final_model_hash"]
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 16
    budget = metrics["budget"]
    assert manifest["budget"] == budget and budget["total_seconds"] > 0
    dec = metrics["decisions"]  # where the policy decides, and (after training) how far it moved from the warm start
    preds = [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 16 and all("decision_entropy" in r and "top_entropy" in r for r in preds)
    assert set(dec["entropy"]) == {"category_matching", "attribute_matching", "relevance_judgment", "label"}
    if method == "warm-start":
        assert dec["labels_changed"] is None and dec["kl_to_reference"] is None
    else:
        assert 0 <= dec["labels_changed"] <= 1 and dec["kl_to_reference"] >= 0
    if method == "warm-start":
        assert manifest["final_model_hash"] == manifest["warm_start_hash"]
        assert budget["optimizer_steps"] == 0 and budget["tokens_trained"] == 0
        return
    assert budget["optimizer_steps"] > 0 and budget["tokens_trained"] > 0
    if method in ("sft-matched", "grpo", "srpo"):  # the RL budget: 2 steps x 2 prompts
        assert budget["optimizer_steps"] == 2 and budget["prompts_seen"] == 4
    if method in ("dpo", "grpo", "srpo"):
        assert budget["tokens_generated"] > 0
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    main_steps = [r for r in log if r["stage"] == "main" and "event" not in r]
    assert main_steps and all("loss" in r and "seconds_per_step" in r for r in main_steps)
    if method in ("grpo", "srpo"):
        assert all(k in main_steps[0] for k in ("reward_mean", "reward_std", "zero_std_groups", "entropy", "kl",
                                                "clip_ratio", "completion_length", "parse_failure_rate"))
    if method in ("srpo", "srpo-exact"):  # per step: reward, share of groups with spread, size of the step term
        for key in ("step_reward/", "step_spread/", "step_term_abs/"):
            assert any(k.startswith(key) for k in main_steps[0]), key
        assert "outcome_advantage_abs" in main_steps[0]
    if method == "srpo-exact":  # the verifier scores every annotated step but the judgment
        assert {k.split("/")[1] for k in main_steps[0] if k.startswith("step_spread/")} == {
            "query_understanding", "item_understanding", "category_matching", "attribute_matching"}
        assert "grm_agreement" not in metrics
    if method == "srpo":
        grm = metrics["grm_agreement"]
        # (a tiny warm start writes few parsable steps, so n may be small; the numbers are checked in test_rewards)
        assert grm["grm"] == "oracle (error 0.1)" and grm["overall"]["n"] >= 0
        assert set(grm["steps"]) == set(metrics["overall"]["step_accuracy"])
    else:
        assert "grm_agreement" not in metrics
    # a finished run is not redone
    assert main(["run", "--method", method, "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY]) == 0
    assert json.loads((path / "manifest.json").read_text())["attempts"] == 1


@pytest.mark.slow
def test_one_key_built_twice_is_one_build_and_rl_seed_shares_it(tmp_path, monkeypatch):
    """The same warm-start key built twice from scratch (two empty caches, same settings) gives the same weights,
    recorded as the run's build with the arithmetic behind it; an RL run with another rl.seed starts from that
    build."""
    builds = []
    for name in ("a", "b"):
        monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path / f"cache-{name}"))
        assert main(["run", "--method", "warm-start", "--benchmark", CARD, "--output-dir", str(tmp_path / name),
                     *TINY, "eval.limit=4"]) == 0
        builds.append(json.loads((run_dir(tmp_path / name, "warm-start") / "manifest.json").read_text())["build"])
    assert builds[0]["warm_start_hash"] == builds[1]["warm_start_hash"] and builds[0]["id"] == builds[0]["warm_start_hash"][:12]
    env = builds[0]["env"]
    assert env["threads"] == torch.get_num_threads() and env["isa"] and env["dtype"] == "float32" and env["processes"] == 1
    for rl_seed in ("0", "5"):
        assert main(["run", "--method", "grpo", "--benchmark", CARD, "--output-dir", str(tmp_path / f"rl{rl_seed}"),
                     *TINY, "eval.limit=4", f"rl.seed={rl_seed}"]) == 0
    a, b = (json.loads((run_dir(tmp_path / f"rl{x}", "grpo") / "manifest.json").read_text()) for x in ("0", "5"))
    assert a["build"]["warm_start_hash"] == b["build"]["warm_start_hash"] == builds[1]["warm_start_hash"]
    assert a["config_hash"] != b["config_hash"]
    # a run asked to start from another build refuses before it trains
    assert main(["run", "--method", "srpo", "--benchmark", CARD, "--output-dir", str(tmp_path / "pin"), *TINY,
                 "--warm-start-hash", "0" * 64]) == 2


@pytest.mark.slow
def test_the_warm_start_can_start_from_the_shipped_base(tmp_path):
    from she_bench.models import BASES, model_hash, resolve_model

    assert main(["run", "--method", "warm-start", "--benchmark", CARD, "--model", "toy-1m-catalogue", "--output-dir",
                 str(tmp_path), *TINY, "eval.limit=4"]) == 0
    (path,) = (tmp_path / "toyshop-tiny").glob("warm-start-toy-1m-catalogue-*")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["base_model_hash"] == BASES["toy-1m-catalogue"] == model_hash(resolve_model("toy-1m-catalogue"))
    assert manifest["build"]["base_model_hash"] == BASES["toy-1m-catalogue"]


@pytest.mark.slow
def test_a_curriculum_stage_left_without_prompts_is_one_error_line(tmp_path, capsys):
    # one scored prompt for a head stage and a tail stage: one of them is empty whatever the filter keeps
    assert main(["run", "--method", "she", "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY,
                 "filter.max_prompts=1", "filter.rollouts=2"]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("she-bench: error")]  # (the rest: progress bars)
    assert len(lines) == 1 and lines[0].startswith("she-bench: error: curriculum stage '") and "Traceback" not in err
    assert "selects no prompt" in lines[0] and "filter.max_prompts" in lines[0]


@pytest.mark.parametrize("method", ["majority", "lexical"])
def test_classic_baseline_runs_end_to_end(tmp_path, method):
    assert main(["run", "--method", method, "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY]) == 0
    path = run_dir(tmp_path, method)
    metrics = json.loads((path / "metrics.json").read_text())
    o = metrics["overall"]
    assert o["n"] == 16 and o["format_valid_rate"] == 1.0 and o["accuracy"]["ci95"] is not None
    assert set(metrics["slices"]) >= {"head", "tail"}
    assert all(v is None for v in o["step_accuracy"].values()) and o["chain_n"] == 0  # no reasoning: n/a
    assert metrics["budget"]["tokens_generated"] == 0 and metrics["budget"]["optimizer_steps"] is None
    preds = [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 16 and all(p["pred"] in ("Exact", "Substitute", "Complement", "Irrelevant") for p in preds)
    if method == "majority":
        assert len({p["pred"] for p in preds}) == 1


def test_lexical_features_see_overlap_brand_and_colour():
    from she_bench.data.schema import Example
    from she_bench.methods.classic import LexicalFeatures

    def ex(query, title, brand, color):
        return Example(id=query + title, query_id=query, query=query, label="Exact",
                       item={"title": title, "brand": brand, "color": color, "category": "boots"})

    train = [ex("red zento boots", "Zento leather boots", "zento", "red"), ex("blue mug", "Ceramic mug", "acme", "white")]
    f = dict(zip(LexicalFeatures.NAMES, LexicalFeatures(train)([train[0]])[0]))
    assert f["brand_in_query"] == 1 and f["color_in_query"] == 1 and f["category_overlap"] == pytest.approx(1 / 3)
    assert f["title_overlap"] == pytest.approx(2 / 3) and f["bm25"] > 0 and f["query_tokens"] == 3
    g = dict(zip(LexicalFeatures.NAMES, LexicalFeatures(train)([train[1]])[0]))
    assert g["brand_in_query"] == 0 and g["color_in_query"] == 0 and g["unmatched_query_tokens"] == 1


def make_context(tmp_path, overrides):
    """A context (srpo recipe, tiny card) and its warm start, for tests that build trainers directly."""
    from she_bench.pipeline import toy_corpus
    from she_bench.config import make_config, parse_overrides
    from she_bench.data.cards import load_benchmark
    from she_bench.methods.common import Context
    from she_bench.methods.sft import warm_start
    from she_bench.models import resolve_model
    from she_bench.runs import Run

    cfg = make_config("srpo", {**parse_overrides(TINY + overrides), "benchmark": CARD, "output_dir": str(tmp_path)})
    bench = load_benchmark(CARD)
    run = Run(cfg, bench.name)
    run.path.mkdir(parents=True)
    ctx = Context(cfg=cfg, bench=bench, run=run, base_model=resolve_model(cfg.model, toy_corpus(bench), cfg.seed))
    ctx.warm_start = warm_start(ctx)
    return ctx, ctx.warm_start


@pytest.mark.parametrize("mixing", ["verifier_first", "grm_only"])
def test_srpo_with_zero_step_weight_reproduces_grpo_loss(tmp_path, mixing, monkeypatch):
    from trl import GRPOTrainer

    from she_bench.methods.grpo import SheGRPOTrainer
    from she_bench.methods.srpo import SRPOTrainer, build_grm, build_trainer

    ctx, init = make_context(tmp_path, ["reward.step_weight=0.0", "rl.temperature=1.5", f"reward.mixing={mixing}"])
    trainer = build_trainer(ctx, init, SRPOTrainer, grm=build_grm(ctx, init))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); here we call the loss directly
    batch = [trainer.train_dataset[i] for i in range(2) for _ in range(4)]
    torch.manual_seed(0)
    out = GRPOTrainer._generate_and_score_completions(trainer, batch)  # TRL's own batch: outcome advantages
    # a tiny model rarely earns reward; give the batch non-zero outcome advantages so the check has teeth
    out["advantages"] = torch.randn(len(batch)) * 1.5
    grpo_adv = SheGRPOTrainer.shape_advantages(trainer, out).clamp(-2, 2)
    srpo_adv = SRPOTrainer.shape_advantages(trainer, out).clamp(-2, 2)
    assert srpo_adv.shape == out["completion_ids"].shape and grpo_adv.shape[1] == 1
    loss_grpo = trainer._compute_loss(trainer.model, {**out, "advantages": grpo_adv})
    loss_srpo = trainer._compute_loss(trainer.model, {**out, "advantages": srpo_adv})
    assert torch.allclose(loss_grpo, loss_srpo, atol=1e-7, rtol=1e-6)
    # and the step weight does change the loss once step rewards differ within a group
    # (a tiny warm start writes few parsable steps, so give each rollout step rewards that differ within its
    # group and put its first tokens in steps 0-2)
    import she_bench.methods.srpo as srpo

    width = out["completion_ids"].shape[1]
    steps = torch.full((len(batch), width), -1, dtype=torch.long)
    steps[:, :3] = torch.tensor([0, 1, 2])
    monkeypatch.setattr(srpo, "token_step_index", lambda *a, **k: steps)
    monkeypatch.setattr(trainer, "step_rewards", lambda: torch.tensor([[1.0, 0.0, 1.0, nan, nan], [0.0, 1.0, 0.0, nan, nan]] * 4))
    ctx.cfg.reward.step_weight = 1.0
    stepwise = SRPOTrainer.shape_advantages(trainer, out).clamp(-2, 2)
    assert not torch.allclose(stepwise, srpo_adv)
    assert not torch.allclose(trainer._compute_loss(trainer.model, {**out, "advantages": stepwise}), loss_grpo)


def _run_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "she_bench.cli", "run", "--method", "srpo", "--benchmark", CARD,
            "--output-dir", str(out), *TINY, "train.max_steps=6", "train.save_steps=2", *extra]


def _logged_step(out: Path, step: int) -> bool:
    return any(f'"step": {step},' in p.read_text() for p in out.glob("toyshop-tiny/*/train_log.jsonl"))


def _kill_when(cmd: list[str], ready) -> None:
    """Start `cmd`, SIGKILL it once `ready()` is true."""
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path):
    """SIGKILL between checkpoints, run again: the same final model, predictions and metrics as a run
    never interrupted (every RNG, the oracle GRM's included, comes back with the checkpoint), and the
    training log holds each step once."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert subprocess.run(_run_cmd(whole), capture_output=True).returncode == 0
    _kill_when(_run_cmd(killed), lambda: _logged_step(killed, 5))  # after checkpoint 4, before checkpoint 6
    assert not list(killed.glob("toyshop-tiny/srpo-*/metrics.json"))
    assert subprocess.run(_run_cmd(killed), capture_output=True).returncode == 0
    a, b = run_dir(whole, "srpo"), run_dir(killed, "srpo")
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert mb["status"] == "done" and mb["attempts"] == 2
    assert ma["final_model_hash"] == mb["final_model_hash"]
    assert (a / "predictions.jsonl").read_text() == (b / "predictions.jsonl").read_text()
    metrics_a, metrics_b = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    seconds = ("train_seconds", "eval_seconds", "total_seconds")  # wall clock: the only figures allowed to differ
    for m in (metrics_a, metrics_b):
        assert all(m["budget"].pop(k) >= 0 for k in seconds)
    assert metrics_a == metrics_b  # budget included: the resumed run counts its steps, prompts and tokens once
    steps = [json.loads(line)["step"] for line in (b / "train_log.jsonl").read_text().splitlines()
             if json.loads(line)["stage"] == "main" and "step" in json.loads(line)]
    assert steps == [1, 2, 3, 4, 5, 6], steps


def _main_steps(path: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (path / "train_log.jsonl").read_text().splitlines())
            if r["stage"] == "main" and "event" not in r]


@pytest.mark.slow
def test_two_runs_started_at_once_write_everything_once(tmp_path):
    """The same run started twice at once into one directory: the second waits for the first, finds the run
    done and exits 0; the predictions hold the limit's count and the log each step once."""
    cmd = [sys.executable, "-m", "she_bench.cli", "run", "--method", "grpo", "--benchmark", CARD,
           "--output-dir", str(tmp_path), *TINY, "eval.limit=8"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert sum("already done" in out for out, _ in outs) == 1
    assert any("another process holds it" in err for _, err in outs)
    path = run_dir(tmp_path, "grpo")
    assert len((path / "predictions.jsonl").read_text().splitlines()) == 8
    assert _main_steps(path) == [1, 2]
    assert json.loads((path / "manifest.json").read_text())["attempts"] == 1


@pytest.mark.slow
def test_resume_sets_a_damaged_checkpoint_aside_and_resumes_from_the_one_before(tmp_path, capsys):
    """A checkpoint whose weights were cut short is reported in one line, set aside, and training resumes from
    the checkpoint before it, to the same final model and a log with each step once."""
    argv = ["run", "--method", "grpo", "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY, "train.max_steps=4"]
    assert main(argv) == 0
    path = run_dir(tmp_path, "grpo")
    whole = json.loads((path / "manifest.json").read_text())["final_model_hash"]
    # as if killed while saving checkpoint 4: no final model, no evaluation, the newest checkpoint cut short
    checkpoints = path / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    for name in ("final", "metrics.json", "predictions.jsonl"):
        target = path / name if name != "final" else checkpoints / name
        subprocess.run(["rm", "-r", str(target)], check=True)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    weights = checkpoints / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    capsys.readouterr()
    assert main(argv) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "does not load" in line]
    assert len(err) == 1 and "checkpoint-4 does not load (model.safetensors: " in err[0], err
    assert err[0].endswith("; resuming from checkpoint-3")
    assert (checkpoints / "damaged" / "checkpoint-4" / "model.safetensors").stat().st_size == 1000  # kept
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["final_model_hash"] == whole
    assert _main_steps(path) == [1, 2, 3, 4]


@pytest.mark.slow
def test_tensorboard_curves_are_written_under_the_run(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path / "cache"))  # the warm start is trained (and logged) here
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["run", "--method", "sft", "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY,
                 "train.report_to=tensorboard"]) == 0
    path = run_dir(tmp_path, "sft")
    assert sorted(p.name for p in (path / "tensorboard").iterdir()) == ["main", "warm_start"]
    elsewhere = [p for root in (path, tmp_path / "cache") for p in root.rglob("events.out.tfevents.*")
                 if path / "tensorboard" not in p.parents]
    assert not elsewhere  # not under the trainers' output folders (checkpoints, the warm-start cache)
    for stage in ("warm_start", "main"):
        (events,) = (path / "tensorboard" / stage).glob("events.out.tfevents.*")
        scalars = EventAccumulator(str(events)).Reload().Scalars("train/loss")
        logged = [r["step"] for r in map(json.loads, (path / "train_log.jsonl").read_text().splitlines())
                  if r["stage"] == stage and "loss" in r]
        assert [s.step for s in scalars] == logged  # the same curve as the JSONL log, step for step


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["train.lora=true", "train.lora_r=4", "reward.grm=generative", "reward.grm_rollouts=1", "reward.grm_epochs=1"],
    ["reward.grm=judge", "reward.mixing=weighted", 'reward.grm_answers=[" +", " -"]'],
])
def test_srpo_variants_run(tmp_path, extra, monkeypatch):
    monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path / "cache"))  # the GRM is trained here, not found cached
    assert main(["run", "--method", "srpo", "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY, *extra]) == 0
    path = run_dir(tmp_path, "srpo")
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    assert any(k.startswith("step_reward/") for r in log if r["stage"] == "main" for k in r)
    if "reward.grm=generative" in extra:
        assert any(r["stage"] == "grm" for r in log)  # the GRM was trained in this run
    grm = json.loads((path / "metrics.json").read_text())["grm_agreement"]
    assert grm["grm"] in ("generative (trained)", "judge (warm start)") and "recall_wrong" in grm["overall"]


def test_judge_whose_answers_are_not_single_tokens_is_refused(tmp_path, capsys):
    # the toy tokenizers split " yes" / " no" into several tokens: a clear error, not P = 0.5 everywhere
    code = main(["run", "--method", "srpo", "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY, "reward.grm=judge"])
    assert code == 2
    assert "two distinct single tokens" in capsys.readouterr().err


ABLATIONS = sorted(p.stem for p in (Path(__file__).parents[1] / "baselines" / "ablations").glob("*.yaml"))
SHE_TINY = ["filter.max_prompts=16", "filter.rollouts=2", "filter.pass_band=[0.0,1.0]", "filter.stratum_cap=0.25",
            "train.max_steps=2"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["she", *ABLATIONS])
def test_she_and_every_ablation_run(tmp_path, recipe):
    assert main(["run", "--method", recipe, "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY, *SHE_TINY]) == 0
    (path,) = (tmp_path / "toyshop-tiny").glob(f"{recipe}-*")
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["training_entropy"]["steps"] >= 1 and "collapsed" in metrics["training_entropy"]
    starts = [r for r in log if r.get("event") == "stage_start"]
    if recipe == "she-no-curriculum":
        assert [r["stage"] for r in starts] == ["1:rl"]
    else:
        assert [r["stage"] for r in starts] == ["1:head", "2:tail"]
        assert {r["stage"] for r in log if "loss" in r} >= {"1:head", "2:tail"}  # the boundary shows in the log
    if recipe == "she-no-filter":
        assert not (path / "filter_report.json").exists()
    else:
        report = json.loads((path / "filter_report.json").read_text())
        assert report["scored"] == 16 and sum(report["by_reason"].values()) == 16
        assert sum(n for counts in report["by_stratum"].values() for n in counts.values()) == 16
        assert report["by_reason"].get("dropped: stratum cap", 0) > 0  # 4 labels, cap 25%: unless all are equal, one is capped


@pytest.mark.slow
def test_console_is_calm(tmp_path):
    """A default run shows progress bars and the summary: no Trainer dictionaries, no library warnings."""
    cmd = [sys.executable, "-m", "she_bench.cli", "run", "--method", "srpo", "--benchmark", CARD,
           "--output-dir", str(tmp_path), *TINY, "train.max_steps=4"]
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    lines = text.split("\n")  # a bar redrawn in place with \r stays on one line
    assert len(lines) <= 40, text
    assert "{'loss'" not in text and "Warning" not in text and "Writing model shards" not in text
    assert "main (srpo)" in text and "run: " in text  # the stage's progress bar and the summary
    verbose = subprocess.run(cmd[:3] + ["--verbose"] + cmd[3:] + ["eval.bootstrap=21"], env=env, capture_output=True, text=True)
    assert verbose.returncode == 0 and "{'loss'" in verbose.stdout + verbose.stderr


@pytest.mark.parametrize("recipe", ["zero-shot", "few-shot", "zero-shot-steps"])
def test_untrained_rows_run_on_a_stratified_subset(tmp_path, recipe):
    argv = ["run", "--method", recipe, "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY, "warm_start.epochs=0",
            "eval.subset=10",
            "prompt.item_fields=[title]", "prompt.field_chars=20"]
    assert main(argv) == 0
    path = run_dir(tmp_path, recipe)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["warm_start_hash"] == manifest["base_model_hash"]  # no training at all
    metrics = json.loads((path / "metrics.json").read_text())
    preds = [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines()]
    assert 10 <= metrics["overall"]["n"] == len(preds) < 16
    assert len({p["query_id"] for p in preds}) == len({p["query_id"] for p in preds}) > 1
    if recipe != "zero-shot-steps":  # label-only: format-valid means the label parses
        assert all(p["format_valid"] == (p["pred"] is not None) for p in preds)


def test_label_prompt_is_refused_for_training(tmp_path, capsys):
    assert main(["run", "--method", "grpo", "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY,
                 "prompt.style=label"]) == 2
    assert "prompt.style=label is for evaluating untrained models" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["rft", "srpo-shuffled", "sft-oracle", "grpo-filter", "she-no-verifier-err03"])
def test_claim_experiment_recipes_run(tmp_path, recipe, capsys, monkeypatch):
    extra = SHE_TINY if recipe in ("grpo-filter", "she-no-verifier-err03") else []
    card = ["card.teacher_noise=0.5", "card.rationale_share=0.5"] if recipe == "sft-oracle" else []
    if recipe == "rft":  # the tiny warm start writes no valid right-label sample: one clear line, no training
        assert main(["run", "--method", recipe, "--benchmark", CARD, "--output-dir", str(tmp_path / "none"), *TINY]) == 2
        assert "RFT found no sample to train on" in capsys.readouterr().err
        _competent_samples(monkeypatch)  # then a warm start whose samples are right half the time: RFT trains on those
    assert main(["run", "--method", recipe, "--benchmark", CARD, "--output-dir", str(tmp_path), *TINY, *extra, *card]) == 0
    path = run_dir(tmp_path, recipe)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["budget"]["optimizer_steps"] > 0
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    if recipe == "srpo-shuffled":  # the step term is still there (only its information is gone)
        assert any(k.startswith("step_term_abs/") for r in log if r.get("stage") == "main" for k in r)
    if recipe == "rft":  # one row per distinct valid right-label sample of its prompts (4 prompts x 1 right)
        assert manifest["rft_rows"] == manifest["rft_prompts"] == 4
    if recipe == "grpo-filter":  # the offline filter, then one GRPO stage without step rewards
        assert (path / "filter_report.json").exists()
        assert [r["method"] for r in log if r.get("event") == "stage_start"] == ["grpo"]
        assert not any(k.startswith("step_reward/") for r in log for k in r)


def _competent_samples(monkeypatch):
    """Stand in for a warm start that can do the task: each prompt's samples are its gold chain and a wrong label."""
    from she_bench.methods import rollouts
    from she_bench.reasoning.template import gold_rationale

    def fake(ctx, model, examples, k, desc="rollouts"):
        def one(ex, right):
            text = gold_rationale(ex, withheld_ok=True, clean=True)
            return {"text": text if right else text + " ", "format_valid": True,
                    "pred": ex.label if right else next(lab for lab in ctx.bench.labels if lab != ex.label)}
        return [[one(ex, i % 2 == 0) for i in range(k)] for ex in examples]

    monkeypatch.setattr(rollouts, "sample_rollouts", fake)


def test_rft_keeps_distinct_valid_samples_with_the_gold_label():
    from types import SimpleNamespace

    from she_bench.methods.sft import rft_targets

    a, b = SimpleNamespace(id="a", label="Exact"), SimpleNamespace(id="b", label="Irrelevant")
    ok = {"format_valid": True, "pred": "Exact", "text": "x"}
    samples = [[ok, dict(ok), {**ok, "text": "y", "format_valid": False}, {**ok, "text": "z", "pred": "Substitute"}],
               [{**ok, "pred": "Irrelevant", "text": "w"}, {**ok, "text": "v"}]]
    assert [(ex.id, t) for ex, t in rft_targets([a, b], samples)] == [("a", "x"), ("b", "w")]
