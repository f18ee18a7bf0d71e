"""Data-parallel training: `accelerate launch` with 2 CPU processes (gloo) runs SFT and SRPO,
and the two replicas end with the same weights."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")
TINY = ["warm_start.epochs=2", "warm_start.batch_size=8", "train.max_steps=2", "train.prompts_per_step=2",
        "train.sft_epochs=1", "rl.group_size=4", "rl.max_completion_length=24", "eval.max_new_tokens=24",
        "eval.bootstrap=20"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "srpo"])
def test_two_process_run_agrees(tmp_path, method):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd = [*launch, "-m", "she_bench.cli", "run", "--method", method, "--benchmark", CARD,
           "--output-dir", str(tmp_path), *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp_path / "toyshop-tiny").glob(f"{method}-*")
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    checks = [r for r in log if r.get("event") == "replica_check"]
    assert checks and all(len(r["checksums"]) == 2 and r["agree"] for r in checks)
    assert json.loads((path / "manifest.json").read_text())["status"] == "done"
    assert json.loads((path / "metrics.json").read_text())["overall"]["n"] == 16
