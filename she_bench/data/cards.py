"""Benchmark cards: YAML files that declare a benchmark, and the loader registry behind them.

A card names a loader (registered below by the data modules), its options, the label
scale, which steps are annotated, the slices, how to split, and what a (query, item) pair
that appears twice does (`duplicates`: error, the default; warn: one line on stderr and the
later copies dropped; keep: the same line and every copy kept). `rationale_share` (and
`rationale_slices`) say which train pairs' gold rationales may serve as SFT targets.
`load_benchmark` turns a card name (or a path to a card) into a `Benchmark` holding its splits;
its `overrides` replace card keys for one run (a run config's `card:` section, e.g.
`card.options.n_train=20000` or `card.rationale_share=0.1`), validated like the card itself.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from she_bench.data.schema import ESCI_LABELS, STEPS, DataError, Example
from she_bench.registry import Registry, UnknownName

CARDS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"

# A loader takes (card, data_dir) and returns either {split: [Example]} or a flat list of
# examples, which the card's `split` section then divides by query.
Loader = Callable[["Card", "Path | None"], "dict[str, list[Example]] | list[Example]"]
LOADERS: Registry[Loader] = Registry("benchmark loader")
# A corrupter takes (example, rng) and returns (the teacher's steps that differ from gold, what was corrupted), or
# None when it cannot corrupt this pair consistently: the card's teacher_noise needs one for its loader.
Corrupter = Callable[[Example, random.Random], "tuple[dict[str, str], str] | None"]
CORRUPTERS: Registry[Corrupter] = Registry("teacher-noise corrupter")
DUPLICATE_MODES = ("error", "warn", "keep")


@dataclass
class Card:
    name: str
    loader: str
    path: Path | None = None
    description: str = ""
    options: dict = field(default_factory=dict)
    data_dir: str | None = None
    labels: list[str] = field(default_factory=lambda: list(ESCI_LABELS))
    good_labels: list[str] = field(default_factory=lambda: ["Exact", "Substitute"])
    annotated_steps: list[str] = field(default_factory=lambda: list(STEPS))
    silver_steps: list[str] = field(default_factory=list)
    """Unannotated steps the rule-based silver annotator derives (data/silver.py): learned, never verified."""
    slices: list[str] = field(default_factory=list)
    split: dict = field(default_factory=lambda: {"train": 0.7, "dev": 0.1, "test": 0.2, "seed": 0})
    duplicates: str = "error"
    rationale_share: float = 1.0
    """Share of train pairs whose gold rationale may serve as an SFT target (warm start, sft, DPO's gold
    fallback, the GRM's gold rows), drawn from the card's seed; nested: a smaller share's pairs are a subset
    of a larger one's. The other pairs stay RL, DPO and classic prompts with their labels."""
    rationale_slices: list[str] | None = None
    """Draw the rationale pairs from train pairs in these slices only (e.g. [head]: head-biased); the share
    is still of all train pairs, so it can be at most those slices' share of train."""
    teacher_noise: float = 0.0
    """Share of the rationale pairs whose released rationale has a corrupted intermediate step while the label stays
    the human one (distilled chain-of-thought: right answers for wrong reasons); the verifier and evaluation keep the
    gold steps. Drawn from the card's seed and nested like rationale_share; needs a corrupter for the loader."""
    annotation_share: float = 1.0
    """Share of train prompts whose intermediate steps the offline verifier knows (the label is always known), drawn
    from the card's seed and nested; on the others the GRM alone can score steps. Dev and test stay fully annotated."""

    @property
    def seed(self) -> int:
        """The card's seed: its loader's `options.seed`, else its split seed."""
        return int((self.options or {}).get("seed", (self.split or {}).get("seed", 0)))

    @classmethod
    def from_yaml(cls, path: Path, overrides: dict | None = None) -> "Card":
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise DataError(str(path), None, None, f"not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise DataError(str(path), None, None, "a card must be a YAML mapping")
        if overrides:
            raw = _merge(raw, overrides)
        for key in ("name", "loader"):
            if key not in raw:
                raise DataError(str(path), None, key, "missing required key")
        known = set(cls.__dataclass_fields__) - {"path"}
        unknown = set(raw) - known
        if unknown:
            raise DataError(str(path), None, sorted(unknown)[0], f"unknown card key (known: {sorted(known)})")
        bad_steps = [s for s in raw.get("annotated_steps", []) if s not in STEPS]
        if bad_steps:
            raise DataError(str(path), None, "annotated_steps", f"unknown step {bad_steps[0]!r}")
        from she_bench.data.silver import SILVER_STEPS

        bad_silver = [s for s in raw.get("silver_steps", [])
                      if s not in SILVER_STEPS or s in raw.get("annotated_steps", STEPS)]
        if bad_silver:
            raise DataError(str(path), None, "silver_steps", f"{bad_silver[0]!r} is annotated already or has no silver "
                            f"rule (silver rules: {', '.join(SILVER_STEPS)})")
        if raw.get("duplicates", "error") not in DUPLICATE_MODES:
            raise DataError(str(path), None, "duplicates", f"expected error, warn or keep, got {raw['duplicates']!r}")
        for key in ("rationale_share", "teacher_noise", "annotation_share"):
            share = raw.get(key, 0.0)
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
                raise DataError(str(path), None, key, f"expected a number in [0, 1], got {share!r}")
        if raw.get("teacher_noise"):
            import she_bench.data  # noqa: F401  (registers the loaders and their corrupters)
        if raw.get("teacher_noise") and raw["loader"] not in CORRUPTERS:
            raise DataError(str(path), None, "teacher_noise", f"loader '{raw['loader']}' has no teacher-noise "
                            f"corrupter (loaders with one: {', '.join(CORRUPTERS.names()) or 'none'})")
        slices = raw.get("rationale_slices")
        if slices is not None and (not isinstance(slices, list) or not slices
                                   or not all(isinstance(x, str) for x in slices)):
            raise DataError(str(path), None, "rationale_slices",
                            f"expected a non-empty list of slice names, got {slices!r}")
        return cls(path=path, **raw)

    def resolve_data_dir(self, override: str | None = None) -> Path | None:
        """The data folder: the override, else the card's `data_dir` relative to the card."""
        if override:
            return Path(override).expanduser().resolve()
        if self.data_dir is None:
            return None
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.data_dir).resolve()


@dataclass
class Benchmark:
    card: Card
    splits: dict[str, list[Example]]

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def data_hash(self) -> str:
        h = hashlib.sha256()
        for split in sorted(self.splits):
            for ex in self.splits[split]:
                h.update(split.encode())
                h.update(json.dumps(ex.to_dict(), sort_keys=True).encode())
        return h.hexdigest()


def find_card(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise FileNotFoundError(f"benchmark card {p} does not exist")
        return p
    p = CARDS_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(c.stem for c in CARDS_DIR.glob("*.yaml"))
        raise UnknownName(f"unknown benchmark '{name_or_path}' (known: {', '.join(known)}; or pass a card path)")
    return p


def list_benchmarks() -> list[str]:
    return sorted(c.stem for c in CARDS_DIR.glob("*.yaml"))


def split_by_query(examples: list[Example], fractions: dict, seed: int) -> dict[str, list[Example]]:
    """Assign whole queries to splits (never single pairs), shuffled by `seed`. Within a split
    the pairs are interleaved across queries (round robin), so the first N (`--limit N`)
    span many queries instead of exhausting one."""
    names = [k for k in fractions if k != "seed"]
    total = sum(float(fractions[k]) for k in names)
    by_query: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_query[ex.query_id].append(ex)
    qids = sorted(by_query)
    random.Random(seed).shuffle(qids)
    out: dict[str, list[Example]] = {}
    start = 0
    for i, k in enumerate(names):
        end = len(qids) if i == len(names) - 1 else start + round(len(qids) * float(fractions[k]) / total)
        groups = [by_query[q] for q in qids[start:end]]
        depth = max((len(g) for g in groups), default=0)
        out[k] = [g[j] for j in range(depth) for g in groups if j < len(g)]
        start = end
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def rationale_ids(card: Card, train: list[Example]) -> set[str]:
    """The train pairs whose rationale may be an SFT target: round(share x train pairs) of them, the first in
    an order fixed by the card's seed (so shares are nested), drawn from `rationale_slices` if given."""
    if card.rationale_share >= 1 and not card.rationale_slices:
        return {ex.id for ex in train}
    pool = [ex for ex in train if not card.rationale_slices or any(s in ex.slices for s in card.rationale_slices)]
    want = round(card.rationale_share * len(train))
    if want > len(pool):
        raise DataError(str(card.path), None, "rationale_share",
                        f"{card.rationale_share:g} of {len(train)} train pairs is {want}, but only {len(pool)} "
                        f"({len(pool) / max(1, len(train)):.1%}) lie in rationale_slices {card.rationale_slices}")
    order = _seeded_order(card, "rationale", pool)
    return {ex.id for ex in order[:want]}


def _seeded_order(card: Card, what: str, examples: list[Example]) -> list[Example]:
    return sorted(examples, key=lambda ex: hashlib.sha256(f"{card.seed}:{what}:{ex.id}".encode()).hexdigest())


def apply_teacher_noise(card: Card, train: list[Example]) -> None:
    """Corrupt round(teacher_noise x rationale pairs) released rationales, the first in an order fixed by the card's
    seed that the loader's corrupter can corrupt (so noise levels are nested). Each corrupted pair records its
    teacher steps and what was corrupted."""
    pool = _seeded_order(card, "teacher_noise", [ex for ex in train if ex.rationale])
    want, done = round(card.teacher_noise * len(pool)), 0
    corrupt = CORRUPTERS.get(card.loader)
    for ex in pool:
        if done == want:
            break
        made = corrupt(ex, random.Random(f"{card.seed}:teacher_noise:{ex.id}"))
        if made is not None:
            ex.teacher, ex.noise = made
            done += 1
    if done < want:
        raise DataError(str(card.path), None, "teacher_noise", f"only {done} of the {len(pool)} rationale pairs can be "
                        f"corrupted consistently; {card.teacher_noise:g} asks for {want}")


def load_benchmark(name_or_path: str, data_dir: str | None = None, overrides: dict | None = None) -> Benchmark:
    import she_bench.data  # noqa: F401  (registers the loaders)

    card = Card.from_yaml(find_card(name_or_path), overrides)
    loaded = LOADERS.get(card.loader)(card, card.resolve_data_dir(data_dir))
    if isinstance(loaded, list):
        split_cfg = dict(card.split)
        seed = int(split_cfg.pop("seed", 0))
        loaded = split_by_query(loaded, split_cfg, seed)
    if not any(loaded.values()):
        raise DataError(str(card.path), None, None, f"loader '{card.loader}' found no examples")
    for split, exs in loaded.items():
        for ex in exs:
            if ex.label not in card.labels:
                raise DataError(str(card.path), f"example {ex.id}", "label",
                                f"label {ex.label!r} not in the card's labels {card.labels}")
    if card.silver_steps:
        from she_bench.data.silver import annotate

        annotate(loaded, card.silver_steps)
    keep = rationale_ids(card, loaded.get("train", []))
    train = loaded.get("train", [])
    for ex in train:
        ex.rationale = ex.id in keep
    if card.teacher_noise:
        apply_teacher_noise(card, train)
    if card.annotation_share < 1:
        known = {ex.id for ex in _seeded_order(card, "annotation", train)[: round(card.annotation_share * len(train))]}
        for ex in train:
            ex.annotated = ex.id in known
    return Benchmark(card=card, splits=loaded)
