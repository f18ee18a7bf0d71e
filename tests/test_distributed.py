"""Data-parallel training: `accelerate launch` with 2 CPU processes (gloo) runs SFT and SRPO (oracle and trained GRM),
the two replicas end with the same weights, and a second launch waits for the one holding a lock."""
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
@pytest.mark.parametrize("method, extra", [("sft", []), ("srpo", []),
                                           ("srpo", ["reward.grm=generative", "reward.grm_prompts=8", "reward.grm_rollouts=1",
                                                     "reward.grm_epochs=1"])])
def test_two_process_run_agrees(tmp_path, method, extra, monkeypatch):
    monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path / "cache"))  # the warm start (and GRM) trained by both ranks
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd = [*launch, "-m", "she_bench.cli", "run", "--method", method, "--benchmark", CARD,
           "--output-dir", str(tmp_path), *TINY, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    # a rank's own error line first: the launcher's traceback after it fills the tail
    errors = [line for line in proc.stderr.splitlines() if "she-bench: error" in line]
    assert proc.returncode == 0, "\n".join(errors) + "\n" + proc.stderr[-3000:]
    (path,) = (tmp_path / "toyshop-tiny").glob(f"{method}-*")
    log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
    checks = [r for r in log if r.get("event") == "replica_check"]
    assert checks and all(len(r["checksums"]) == 2 and r["agree"] for r in checks)
    assert json.loads((path / "manifest.json").read_text())["status"] == "done"
    assert json.loads((path / "metrics.json").read_text())["overall"]["n"] == 16


HOLD = """
import os, sys, time
from pathlib import Path
from she_bench.locks import file_lock
from she_bench.runs import leave_process_group

launch, rank, shared, folder = sys.argv[1], os.environ["RANK"], Path(sys.argv[2]), Path(sys.argv[3])
other = "B" if launch == "A" else "A"
log = folder / "log.txt"
def note(what):
    with open(log, "a") as f:
        f.write(f"{what} {launch} {rank}\\n")
with file_lock(shared, collective=True):
    note("enter")
    if rank == "0":  # hold the lock until this launch's rank 1 is inside too and the other launch (if still to come) waits
        def done():
            text = log.read_text()
            waits = "another process holds it" in (folder / f"{other}0.err").read_text()
            return f"enter {launch} 1" in text and (waits or f"enter {other} 0" in text)
        deadline = time.time() + 60
        while time.time() < deadline and not done():
            time.sleep(0.1)
    note("leave")
leave_process_group()  # as every `she-bench` command does: exiting with the gloo group's threads alive aborts the process
"""


@pytest.mark.slow
def test_a_second_launch_waits_for_the_first_and_ranks_of_one_launch_do_not(tmp_path):
    """Two data-parallel launches (2 ranks each, gloo) take one collective lock: each launch holds it as one (both its
    ranks inside together), and the other launch waits, entering only after the holder's rank 0 has left."""
    import socket

    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    (tmp_path / "log.txt").write_text("")
    procs = []
    for launch in "AB":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for rank in (0, 1):
            env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                   "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            err = open(tmp_path / f"{launch}{rank}.err", "w")
            procs.append(subprocess.Popen([sys.executable, str(script), launch, str(tmp_path / "shared"), str(tmp_path)],
                                          env=env, stdout=err, stderr=err))
    for p in procs:
        p.wait(timeout=300)
    errs = {f.stem: f.read_text() for f in tmp_path.glob("*.err")}
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errs
    events = [tuple(line.split()) for line in (tmp_path / "log.txt").read_text().splitlines()]
    first = next(launch for what, launch, _ in events if what == "enter")
    second = "B" if first == "A" else "A"
    holder_left = events.index(("leave", first, "0"))
    assert all(events.index(("enter", first, r)) < holder_left for r in "01")  # one launch inside together
    assert all(events.index(("enter", second, r)) > holder_left for r in "01")  # the other waited for it
    assert "another process holds it" in errs[f"{second}0"]
