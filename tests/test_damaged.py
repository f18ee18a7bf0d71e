"""Damaged files are found, not crashed on: a checkpoint or cached model folder whose files do not load
is reported in one line, set aside (renamed, never deleted) and rebuilt or resumed from before it."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from she_bench.methods import common
from she_bench.models import loads, unreadable


def model_folder(path: Path, *extra: str) -> Path:
    """A folder with what a saved model or a trainer checkpoint holds (tiny weights)."""
    path.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for name in extra:
        if name.endswith(".json"):
            (path / name).write_text(json.dumps({"global_step": 1}))
        else:
            torch.save({"state": torch.zeros(8)}, path / name)
    return path


def cut(file: Path, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


def test_unreadable_names_the_file_that_does_not_load(tmp_path):
    ok = model_folder(tmp_path / "ok", "trainer_state.json", "optimizer.pt")
    assert unreadable(ok, "trainer_state.json") is None
    weights = model_folder(tmp_path / "weights")
    cut(weights / "model.safetensors")
    assert unreadable(weights).startswith("model.safetensors: Error while deserializing header")
    state = model_folder(tmp_path / "state", "trainer_state.json")
    (state / "trainer_state.json").write_text('{"global_step": ')
    assert unreadable(state).startswith("trainer_state.json: ")
    optimizer = model_folder(tmp_path / "optimizer", "optimizer.pt")
    cut(optimizer / "optimizer.pt", 0.9)
    assert unreadable(optimizer).startswith("optimizer.pt: ")
    assert unreadable(model_folder(tmp_path / "partial"), "trainer_state.json") == "trainer_state.json missing"
    (tmp_path / "empty").mkdir()
    assert unreadable(tmp_path / "empty", "config.json", "*.safetensors") == "config.json missing"
    (tmp_path / "empty" / "config.json").write_text("{}")
    assert unreadable(tmp_path / "empty", "config.json", "*.safetensors") == "*.safetensors missing"


def test_resume_skips_a_damaged_newest_checkpoint_and_sets_it_aside(tmp_path, capsys):
    for step in (2, 4, 6):
        model_folder(tmp_path / f"checkpoint-{step}", "trainer_state.json", "optimizer.pt")
    cut(tmp_path / "checkpoint-6" / "model.safetensors")
    assert common.last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"she-bench: {tmp_path / 'checkpoint-6'} does not load (model.safetensors: Error while deserializing "
                    f"header: incomplete metadata, file not fully covered): set aside as "
                    f"{tmp_path / 'damaged' / 'checkpoint-6'}; resuming from checkpoint-4")
    assert (tmp_path / "damaged" / "checkpoint-6" / "model.safetensors").exists()  # kept, not deleted
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_resume_from_the_start_when_no_checkpoint_loads(tmp_path, capsys):
    model_folder(tmp_path / "checkpoint-2", "trainer_state.json")
    model_folder(tmp_path / "damaged" / "checkpoint-2")  # set aside before: the new one gets its own name
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("")
    assert common.last_checkpoint(tmp_path) is None
    assert "resuming from the start" in capsys.readouterr().err
    assert (tmp_path / "damaged" / "checkpoint-2.1" / "trainer_state.json").exists()


def test_a_damaged_cached_model_is_trained_again_not_trusted(tmp_path, monkeypatch, capsys):
    trained = []
    monkeypatch.setattr(common, "train_and_save", lambda trainer, out_dir, final, ctx=None: trained.append(trainer) or final)
    final = model_folder(tmp_path / "final")
    assert common.train_once(tmp_path, lambda: "trainer") == final and not trained  # whole: trusted, nothing built
    cut(final / "model.safetensors")
    assert common.train_once(tmp_path, lambda: "trainer") == final and trained == ["trainer"]
    assert "does not load (model.safetensors: " in capsys.readouterr().err
    assert (tmp_path / "damaged" / "final" / "model.safetensors").exists() and not final.exists()


def test_a_damaged_toy_model_is_rebuilt(tmp_path, monkeypatch):
    from she_bench import models

    monkeypatch.setenv("SHE_BENCH_CACHE", str(tmp_path))
    corpus = ["Query: red shoe\nItem: red shoe by Acme\nLabel: Exact"] * 20
    path = models.toy_model_dir("toy-1m", corpus, 0)
    assert loads(path)
    cut(path / "model.safetensors")
    assert models.toy_model_dir("toy-1m", corpus, 0) == path and loads(path)
    assert (tmp_path / "models" / "damaged" / path.name).exists()
