"""`she-bench eval` and `she-bench data describe` end to end, on toyshop with the untrained toy-1m.

An untrained model writes no valid rationale: the run must still finish, keep every example
and report (near) zero accuracy honestly. A finished run is not redone; an interrupted one
resumes from the predictions already written.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from she_bench.cli import main
from she_bench.data.cards import Card, find_card, load_benchmark
from she_bench.engines.hf import TransformersEngine
from she_bench.evaluation.metrics import compute_metrics

LIMIT = 24
ARGS = ["eval.batch_size=8", "eval.max_new_tokens=24", "eval.bootstrap=50"]
RECORD_KEYS = {"id", "query_id", "query", "slices", "gold", "pred", "status", "format_valid", "judgment",
               "steps", "step_verdicts", "entropy", "n_tokens", "text"}


def eval_argv(out: Path, limit: int = LIMIT) -> list[str]:
    return ["eval", "--limit", str(limit), "--output-dir", str(out), *ARGS]


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def toyshop():
    return load_benchmark("toyshop")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished evaluation (the README's default job, cut down): (output dir, run dir)."""
    out = tmp_path_factory.mktemp("runs")
    assert main(eval_argv(out)) == 0
    (run_dir,) = (out / "toyshop").iterdir()
    return out, run_dir


@pytest.fixture
def count_generated(monkeypatch):
    """Count the prompts the engine is asked to generate for."""
    prompts: list[str] = []
    original = TransformersEngine.generate

    def generate(self, batch, *args, **kwargs):
        prompts.extend(batch)
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(TransformersEngine, "generate", generate)
    return prompts


def test_eval_writes_run_directory(finished, toyshop):
    out, run_dir = finished
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "manifest.json", "predictions.jsonl", "metrics.json"}
    assert not list(run_dir.glob("*.tmp"))

    config = (run_dir / "config.yaml").read_text()
    assert "limit: 24" in config and "max_new_tokens: 24" in config and "model: toy-1m" in config

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["seed"] == 0 and manifest["method"] == "eval"
    assert {"torch", "transformers", "tokenizers", "python"} <= set(manifest["versions"])
    assert "commit" in manifest["git"]
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["data_hash"])
    assert manifest["data_hash"] == toyshop.data_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["model_hash"])
    assert run_dir.name.endswith(manifest["config_hash"])
    assert manifest["engine"] == "transformers" and manifest["device"]

    records = read_records(run_dir / "predictions.jsonl")
    assert [r["id"] for r in records] == [ex.id for ex in toyshop.splits["test"][:LIMIT]]
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert isinstance(r["text"], str) and isinstance(r["steps"], dict)
        assert r["pred"] is None or r["pred"] in toyshop.labels
        assert set(r["step_verdicts"]) == set(toyshop.card.annotated_steps)
        assert 0 < r["n_tokens"] <= 24

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == LIMIT
    expected = compute_metrics(records, labels=toyshop.labels, good_labels=toyshop.card.good_labels,
                               slices=toyshop.card.slices, n_boot=50, seed=0)
    # besides compute_metrics: the verdict ceilings and AUCs, and the decision-token figures
    extra = {"split", "ceilings", "conditioning", "decisions"}
    assert set(metrics) == set(expected) | extra
    assert metrics["decisions"]["labels_changed"] is None and metrics["decisions"]["kl_to_reference"] is None  # no reference
    assert set(metrics["overall"]) == set(expected["overall"])
    assert set(metrics["slices"]) == set(expected["slices"]) and {"head", "tail"} <= set(metrics["slices"])
    assert set(metrics["ceilings"]) == {"category_matching", "attribute_matching", "relevance_judgment"}
    # metrics.json is exactly what compute_metrics gives for the written predictions
    assert {k: v for k, v in metrics.items() if k not in extra} == json.loads(json.dumps(expected))

    # an untrained model: honest (near) zero scores, every example kept, nothing crashes
    overall = metrics["overall"]
    assert overall["n"] == LIMIT
    assert overall["accuracy"]["value"] <= 0.25
    assert overall["format_valid_rate"] == 0
    assert overall["parse_failures"] == sum(r["pred"] is None for r in records)


def test_finished_run_is_not_redone(finished, capsys, monkeypatch, count_generated):
    out, run_dir = finished
    files = {name: ((run_dir / name).stat().st_mtime_ns, (run_dir / name).read_bytes())
             for name in ("predictions.jsonl", "metrics.json", "manifest.json")}

    def no_engine(*args, **kwargs):
        raise AssertionError("a finished run built an engine")

    monkeypatch.setattr("she_bench.evaluation.evaluate.build_engine", no_engine)
    capsys.readouterr()
    assert main(eval_argv(out)) == 0
    assert "already done" in capsys.readouterr().out
    assert count_generated == []
    for name, (mtime, content) in files.items():
        assert (run_dir / name).stat().st_mtime_ns == mtime, name
        assert (run_dir / name).read_bytes() == content, name


def test_interrupted_run_resumes(finished, tmp_path, count_generated):
    out, run_dir = finished
    done = 10
    records = read_records(run_dir / "predictions.jsonl")
    # the state a killed evaluation leaves: manifest "running", N whole lines and a cut-off one
    resumed = tmp_path / run_dir.relative_to(out)
    resumed.mkdir(parents=True)
    shutil.copy(run_dir / "config.yaml", resumed / "config.yaml")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(status="running", attempts=1)
    manifest.pop("finished", None)
    (resumed / "manifest.json").write_text(json.dumps(manifest))
    kept = [{**r, "kept_from_before": True} for r in records[:done]]
    partial = "".join(json.dumps(r) + "\n" for r in kept) + json.dumps(records[done])[:37]
    (resumed / "predictions.jsonl").write_text(partial)

    assert main(eval_argv(tmp_path)) == 0

    assert len(count_generated) == LIMIT - done  # only the missing examples were generated
    after = read_records(resumed / "predictions.jsonl")  # every line parses: the cut-off one is gone
    assert len(after) == LIMIT
    assert [r["id"] for r in after[:done]] == [r["id"] for r in records[:done]]
    assert all(r.get("kept_from_before") for r in after[:done])
    assert not any(r.get("kept_from_before") for r in after[done:])
    assert sorted(r["id"] for r in after) == sorted(r["id"] for r in records)
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["attempts"] == 2
    assert json.loads((resumed / "metrics.json").read_text())["overall"]["n"] == LIMIT


def test_eval_unknown_model_exits_2(tmp_path, capsys):
    assert main(["eval", "--model", "/nonexistent", "--limit", "4", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "/nonexistent" in err
    assert not any(tmp_path.rglob("manifest.json"))


def _esci_dir() -> Path:
    return Card.from_yaml(find_card("esci-us-150")).resolve_data_dir()


@pytest.mark.skipif(not _esci_dir().is_dir(), reason="esci-us-150 data folder (../shared/data/esci-us-150) not here")
@pytest.mark.slow
def test_data_describe_esci_us_150(capsys):
    assert main(["data", "describe", "esci-us-150"]) == 0
    text = capsys.readouterr().out
    assert "## all: 6,678 pairs, 150 queries" in text
    all_line = text.split("## all:")[1]
    for count in ("Exact 3,389", "Substitute 1,898", "Complement 305", "Irrelevant 1,086"):
        assert count in all_line, count

    assert main(["data", "describe", "esci-us-150", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    total = card["splits"]["all"]
    assert total["pairs"] == 6678 and total["queries"] == 150
    assert total["labels"] == {"Exact": 3389, "Substitute": 1898, "Complement": 305, "Irrelevant": 1086}
    assert sum(card["splits"][s]["pairs"] for s in ("train", "dev", "test")) == 6678


def test_data_describe_unknown_benchmark_exits_2(capsys):
    assert main(["data", "describe", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'nosuch'" in err and "toyshop" in err
