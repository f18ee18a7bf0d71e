import shlex
from pathlib import Path

import yaml

from she_bench.ablate import emit, load_suite, run_jobs
from she_bench.cli import build_parser, main

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


def test_finished_runs_are_skipped(tmp_path, capsys):
    suite = write_suite(tmp_path, recipes=["sft"])
    assert main(["ablate", "--suite", str(suite), "--workers", "2"]) == 0
    jobs = load_suite(suite)
    assert [j.status() for j in jobs] == ["done", "done"]
    capsys.readouterr()
    assert run_jobs(jobs) == 0
    assert "0 to run" in capsys.readouterr().out
    assert emit(jobs) == ""
