"""Claim evidence: what the claim analyses read of each run, kept beside the claims report.

The runs behind a claims report take hours of compute, and their folders (checkpoints, logs) stay on the machine that
made them. The evidence file keeps, per run, only what the claim endpoints read:

* each greedy test prediction's id, query, slices, gold label, predicted label, step verdicts, entropy, and where
  the run measured them its decision-token entropies, top-20% entropy and KL to the warm start (entropies rounded
  to ENTROPY_DIGITS decimals);
* the sampled evaluation's rows (whole-chain counts per pair), where the run made one;
* the curriculum stages its training log records;
* its config (the stand-ins a claim page lists are read from it) and its label set;
* its build: the hash of the warm start it started from, the base model's, and the arithmetic the warm start was
  trained under (threads, instruction set, processor, dtype), from its manifest; and the experiments it was run for
  (file and analysis hash).

Two runs are paired only on one build. Lines written before builds were recorded get an *inferred* build: within
each cell (runs of one warm-start identity, config.warm_start_identity), rows whose greedy test labels agree on at
least INFER_AGREEMENT of the pairs are linked (single linkage) into one build. In the claims evidence of 147 runs,
every row linked into a build agrees on at least 0.927 of labels with some other row of it (RL moves about
2-6% of them), and no two rows of different builds of one key agree on more than 0.903, so the threshold sits in the
gap. A warm-start or RL row (NEAR_METHODS) that links to none is a build of its own; a row that trains far from its
warm start (SFT, DPO) and links to none has an *undetermined* build (its pairs are used and counted as unverified).
A rebuild that reproduces a line label for label names the real build of the line's inferred one
(claims.RunIndex.resolve).

`she-bench claims` reads every run through its evidence, so a report made from run folders and one made from the
evidence file alone are the same bytes: the report can be regenerated, and re-analysed, on a clean clone, on another
machine, or after run folders were deleted. A finished run folder wins over its line in the file; lines of runs not
on disk are kept as they were, so regenerating from a partial runs folder loses nothing.

The file is LZMA-compressed JSON Lines (`evidence.jsonl.xz`), one line per run in path order, each keyed by the
run's folder relative to the runs folder (config hash included, as `ablate` names it).
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from she_bench.data.files import json_lines
from she_bench.data.schema import DataError

FILENAME = "evidence.jsonl.xz"
ENTROPY_DIGITS = 4
PREDICTION_FIELDS = ("id", "query_id", "slices", "gold", "pred", "format_valid", "step_verdicts", "entropy",
                     "decision_entropy", "top_entropy", "kl_ref")
SAMPLED_FIELDS = ("id", "query_id", "slices", "chain_right")
REQUIRED = ("rel", "config", "labels", "good_labels", "predictions", "sampled", "stages")
OPTIONAL = ("build", "experiments")
"""Fields of lines written since builds are recorded (older lines get an inferred build when read)."""
INFER_AGREEMENT = 0.92
NEAR_METHODS = ("none", "grpo", "srpo", "she")
"""Methods whose greedy labels stay within a few percent of their warm start's (the warm start itself, RL)."""


@dataclass
class Evidence:
    """One run as the claim analyses see it (the fields of a report RunData they read, plus its sampled rows)."""

    rel: str
    config: dict
    labels: list
    good_labels: list
    predictions: list[dict]
    sampled: list[dict] | None
    """The sampled evaluation's rows (sampled.jsonl), or None where the run made none."""
    stages: list[dict]
    """The training log's stage_start events."""
    build: dict | None = None
    """{id, warm_start_hash, base_model_hash, env, inferred}: the weights the run started from (see the module
    docstring); id "undetermined-..." where an inferred build could not be told."""
    experiments: list[dict] = field(default_factory=list)
    """[{file, analysis_hash}]: the claim experiments the run was started for (empty where not recorded)."""

    @property
    def metrics(self) -> dict:
        return {"labels": self.labels, "good_labels": self.good_labels}

    @property
    def train_log(self) -> list[dict]:
        return self.stages


def _slim(row: dict, fields: tuple) -> dict:
    out = {k: row[k] for k in fields if k in row}
    for key in ("entropy", "top_entropy", "kl_ref"):
        if isinstance(out.get(key), float):
            out[key] = round(out[key], ENTROPY_DIGITS)
    if isinstance(out.get("decision_entropy"), dict):
        out["decision_entropy"] = {k: round(v, ENTROPY_DIGITS) if isinstance(v, float) else v
                                   for k, v in out["decision_entropy"].items()}
    return out


def from_run(run, rel: str) -> Evidence:
    """The evidence of a finished run (a report.collect.RunData)."""
    from she_bench.report.collect import read_jsonl

    sampled = Path(run.path) / "sampled.jsonl"
    labels = run.metrics.get("labels") or sorted({p["gold"] for p in run.predictions})
    # through JSON once, so an evidence line read back is the same object as the one made from the folder
    ev = Evidence(rel=rel, config=run.config, labels=list(labels),
                  good_labels=list(run.metrics.get("good_labels") or []),
                  predictions=[_slim(p, PREDICTION_FIELDS) for p in run.predictions],
                  sampled=[_slim(r, SAMPLED_FIELDS) for r in read_jsonl(sampled)] if sampled.is_file() else None,
                  stages=[e for e in run.train_log if e.get("event") == "stage_start"], build=run_build(run.manifest),
                  experiments=list(run.manifest.get("experiments") or []))
    return Evidence(**json.loads(_line(ev)))


def run_build(manifest: dict) -> dict | None:
    """A run's build from its manifest (None: no warm start recorded, e.g. a classic baseline)."""
    b = manifest.get("build")
    if isinstance(b, dict) and b.get("warm_start_hash"):
        return {**b, "inferred": False}
    h = manifest.get("warm_start_hash")
    return {"id": h[:12], "warm_start_hash": h, "base_model_hash": manifest.get("base_model_hash"), "env": None,
            "inferred": False} if isinstance(h, str) else None


def undetermined(build: dict | None) -> bool:
    return build is None or str(build.get("id", "")).startswith("undetermined")


def agreement(a: Evidence, b: Evidence) -> float:
    """Share of the test pairs both runs predicted on which their greedy labels agree."""
    pa = {p["id"]: p["pred"] for p in a.predictions}
    both = [p for p in b.predictions if p["id"] in pa]
    return sum(pa[p["id"]] == p["pred"] for p in both) / len(both) if both else 0.0


def infer_builds(evidence: dict[str, Evidence]) -> None:
    """Give every line without a recorded build an inferred one (see the module docstring), in place."""
    from she_bench.config import warm_start_identity

    cells: dict[str, list[Evidence]] = {}
    for rel in sorted(evidence):
        if evidence[rel].build is None:
            cells.setdefault(warm_start_identity(evidence[rel].config), []).append(evidence[rel])
    for rows in cells.values():
        parent = list(range(len(rows)))

        def root(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                if agreement(rows[i], rows[j]) >= INFER_AGREEMENT:
                    parent[root(i)] = root(j)
        clusters: dict[int, list[Evidence]] = {}
        for i, row in enumerate(rows):
            clusters.setdefault(root(i), []).append(row)
        for members in clusters.values():
            tag = hashlib.sha256("\n".join(sorted(m.rel for m in members)).encode()).hexdigest()[:8]
            near = len(members) > 1 or members[0].config.get("method") in NEAR_METHODS
            bid = f"inferred-{tag}" if near else f"undetermined-{tag}"
            for m in members:
                m.build = {"id": bid, "warm_start_hash": None, "base_model_hash": None, "env": None, "inferred": True,
                           "rows": len(members)}


def _line(ev: Evidence) -> str:
    return json.dumps(asdict(ev), sort_keys=True, separators=(",", ":"), default=str)


def load(path: Path) -> dict[str, Evidence]:
    """{rel: Evidence} of an evidence file; a damaged file or line is one error naming the file, line and field."""
    try:
        data = lzma.decompress(Path(path).read_bytes())
    except (lzma.LZMAError, EOFError) as e:
        raise DataError(str(path), None, None, f"not a readable {FILENAME} file ({e})") from None
    out: dict[str, Evidence] = {}
    for i, row in json_lines(path, io.BytesIO(data)):
        for key in REQUIRED:
            if key not in row:
                raise DataError(str(path), i, key, "missing")
        for key, kind in (("rel", str), ("config", dict), ("labels", list), ("good_labels", list),
                          ("predictions", list), ("stages", list)):
            if not isinstance(row[key], kind):
                raise DataError(str(path), i, key, f"expected {kind.__name__}, got {type(row[key]).__name__}")
        if row["sampled"] is not None and not isinstance(row["sampled"], list):
            raise DataError(str(path), i, "sampled", "expected a list or null")
        for j, p in enumerate(row["predictions"]):
            missing = [k for k in ("id", "query_id", "gold", "pred") if not isinstance(p, dict) or k not in p]
            if missing:
                raise DataError(str(path), f"{i} ({row['rel']}), prediction {j}", missing[0], "missing")
        if row.get("build") is not None and not (isinstance(row["build"], dict)
                                                 and isinstance(row["build"].get("id"), str)):
            raise DataError(str(path), i, "build", "expected a mapping with an id, or null")
        if not isinstance(row.get("experiments", []), list):
            raise DataError(str(path), i, "experiments", "expected a list")
        if row["rel"] in out:
            raise DataError(str(path), i, "rel", f"run {row['rel']!r} appears twice")
        out[row["rel"]] = Evidence(**{k: row[k] for k in REQUIRED}, **{k: row[k] for k in OPTIONAL if k in row})
    infer_builds(out)
    return out


def write(evidence: dict[str, Evidence], path: Path) -> None:
    """Every line, in path order, compressed with fixed settings (the same evidence gives the same bytes); written
    to a temporary file first, so a killed write leaves the old file whole."""
    text = "".join(_line(evidence[rel]) + "\n" for rel in sorted(evidence))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6))
    os.replace(tmp, path)
