import shlex
from pathlib import Path

import pytest
import yaml

from she_bench.ablate import emit, interleave, load_suite, run_jobs, warm_start_group
from she_bench.cli import build_parser, main
from she_bench.config import ConfigError

CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")
TINY = {"warm_start.epochs": 1, "warm_start.batch_size": 16, "train.sft_epochs": 0.5, "eval.max_new_tokens": 16,
        "eval.batch_size": 16, "eval.bootstrap": 10}


def write_suite(tmp_path, **extra) -> Path:
    suite = {"name": "tiny", "recipes": ["sft", "grpo", "she-no-filter"], "benchmarks": [CARD], "seeds": [0, 1],
             "overrides": TINY, "output_dir": str(tmp_path / "runs"), **extra}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_grid_expands_and_emits_runnable_commands(tmp_path, capsys):
    jobs = load_suite(write_suite(tmp_path))
    assert len(jobs) == 6 and len({j.run.path for j in jobs}) == 6
    assert {j.status() for j in jobs} == {"new"}
    lines = emit(jobs).splitlines()
    assert len(lines) == 6
    for line in lines:
        argv = shlex.split(line)
        assert argv[:2] == ["she-bench", "run"]
        args = build_parser().parse_args(argv[1:])  # the scheduler's command line parses as given
        assert args.method in ("sft", "grpo", "she-no-filter") and "train.sft_epochs=0.5" in args.overrides
    assert main(["ablate", "--suite", str(write_suite(tmp_path)), "--dry-run"]) == 0
    assert "6 runs" in capsys.readouterr().out


@pytest.mark.slow
def test_finished_runs_are_skipped(tmp_path, capsys):
    suite = write_suite(tmp_path, recipes=["sft"])
    assert main(["ablate", "--suite", str(suite), "--workers", "2"]) == 0
    jobs = load_suite(suite)
    assert [j.status() for j in jobs] == ["done", "done"]
    capsys.readouterr()
    assert run_jobs(jobs) == 0
    assert "0 to run" in capsys.readouterr().out
    assert emit(jobs) == ""


def test_grid_cells_are_named_runs_whose_commands_resolve_to_the_same_config(tmp_path):
    from she_bench.config import make_config, parse_overrides

    suite = tmp_path / "grid.yaml"
    suite.write_text(yaml.safe_dump({"recipes": ["grpo"], "benchmarks": [CARD], "seeds": [0, 1],
                                     "overrides": {"train.keep_checkpoints": None},
                                     "grid": {"train.lr": [5.0e-5, 1.0e-3], "train.max_steps": [2]},
                                     "output_dir": str(tmp_path / "runs")}))
    jobs = load_suite(suite)
    assert len(jobs) == 4
    assert sorted({j.run.cfg.name for j in jobs}) == ["grpo_lr=0.001_max_steps=2", "grpo_lr=5e-05_max_steps=2"]
    for job in jobs:
        args = build_parser().parse_args(job.command()[1:])
        cfg = make_config(args.method, {**parse_overrides(args.overrides), "benchmark": args.benchmark,
                                        "model": args.model, "seed": args.seed, "output_dir": args.output_dir})
        assert cfg.hash() == job.run.cfg.hash()  # 5e-05 and null survive the command line
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"recipes": ["grpo"], "grid": {"train.lr": 0.1}}))
    with pytest.raises(ConfigError, match="grid"):
        load_suite(bad)


def test_cells_set_keys_together_and_card_options_sweep_like_config_keys(tmp_path):
    cells = [{"card.rationale_share": 0.5, "warm_start.epochs": 2}, {"card.rationale_share": 0.25, "warm_start.epochs": 4}]
    jobs = load_suite(write_suite(tmp_path, recipes=["sft"], seeds=[0], cells=cells,
                                  grid={"card.options.n_train": [32, 48]}))
    assert len(jobs) == 4  # grid x cells
    got = {(j.run.cfg.card["options"]["n_train"], j.run.cfg.card["rationale_share"], j.run.cfg.warm_start.epochs) for j in jobs}
    assert got == {(32, 0.5, 2.0), (32, 0.25, 4.0), (48, 0.5, 2.0), (48, 0.25, 4.0)}
    assert len({j.run.path for j in jobs}) == 4
    for j in jobs:  # the emitted command gives the same run
        args = build_parser().parse_args(shlex.split(emit([j]))[1:])
        from she_bench.cli import config_from_args

        assert config_from_args(args, args.method, recipe=args.method).hash() == j.run.cfg.hash()
    with pytest.raises(ConfigError, match="cells"):
        load_suite(write_suite(tmp_path, cells=[{}]))
    with pytest.raises(Exception, match="rationale_share"):  # a card value out of range is refused like any other
        load_benchmark_for(jobs[0], {"rationale_share": 2.0})


def load_benchmark_for(job, card):
    from she_bench.data.cards import load_benchmark

    return load_benchmark(job.run.cfg.benchmark, None, card)


def test_parallel_workers_start_on_different_warm_starts(tmp_path):
    """interleave puts one job of each warm start first. A knob RL alone reads (annotation_share) keeps the warm
    start of its level 1, so its jobs join that group; one that changes the warm start's rows (teacher_noise) does not."""
    from she_bench.methods.common import Context
    from she_bench.methods.sft import warm_start_dir
    from she_bench.models import resolve_model
    from she_bench.pipeline import open_benchmark, toy_corpus
    from she_bench.runs import Run

    suite = write_suite(tmp_path, recipes=["grpo", "srpo"], seeds=[0, 1], overrides={**TINY, "reward.verifier_steps": None},
                        grid={"card.annotation_share": [1.0, 0.25], "card.teacher_noise": [0.0, 0.5]})
    jobs = load_suite(suite)
    order = interleave(jobs)
    assert sorted(map(id, order)) == sorted(map(id, jobs))
    groups = [warm_start_group(j) for j in order]
    assert len(set(groups)) == 4 and len(set(groups[:4])) == 4  # seed x teacher_noise, one of each first

    def folder(job):
        cfg = job.run.cfg
        bench = open_benchmark(cfg)
        base = resolve_model(cfg.model, toy_corpus(bench), cfg.seed)
        return warm_start_dir(Context(cfg=cfg, bench=bench, run=Run(cfg, bench.name), base_model=base))[0]

    by_group: dict = {}
    for job in jobs:
        by_group.setdefault(warm_start_group(job), set()).add(folder(job))
    assert all(len(folders) == 1 for folders in by_group.values())  # a group shares one cached warm start
    assert len(set().union(*by_group.values())) == 4  # and no two groups do
