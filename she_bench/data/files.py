"""Generic user data (JSONL, CSV or Parquet) declared by a card, plus the readers and field
helpers the other real-data loaders share.

Error positions: JSONL reports 1-based file lines ("line N"), CSV 1-based data rows with the
header not counted ("data row N"), Parquet 1-based table rows ("table row N").
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from she_bench.data.cards import LOADERS, Card
from she_bench.data.schema import STEPS, DataError, Example

TAIL_MIN_WORDS = 5  # a query with at least this many words is "tail" (long-tail), else "head"
CLIP_CHARS = 300


# ---------------------------------------------------------------- readers

def need_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(str(path), None, None, "file not found")
    return path


def need_data_dir(card: Card, data_dir: Path | None) -> Path:
    if data_dir is None:
        raise DataError(str(card.path), None, "data_dir", f"loader '{card.loader}' needs a data_dir (set it in the card or pass one)")
    if not data_dir.is_dir():
        raise DataError(str(data_dir), None, None, f"data folder not found (card {card.path})")
    return data_dir


def check_columns(source: Path | str, have: list[str], required: list[str]) -> None:
    for col in required:
        if col not in have:
            raise DataError(str(source), None, col, f"missing column (columns present: {', '.join(have)})")


def read_csv(path: Path, required: list[str], delimiter: str = ",") -> Iterator[tuple[str, dict]]:
    """Yield ("data row N", row) for each data row, after checking the header."""
    need_file(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        check_columns(path, list(reader.fieldnames or []), required)
        for n, row in enumerate(reader, 1):
            yield f"data row {n}", row


def read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield ("line N", object) for each non-blank line."""
    need_file(path)
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(str(path), f"line {n}", None, f"invalid JSON: {e.msg}") from e
            if not isinstance(obj, dict):
                raise DataError(str(path), f"line {n}", None, f"expected a JSON object, got {type(obj).__name__}")
            yield f"line {n}", obj


def read_parquet(path: Path, required: list[str]) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    need_file(path)
    table = pq.read_table(path)
    check_columns(path, table.column_names, required)
    for n, row in enumerate(table.to_pylist(), 1):
        yield f"table row {n}", row


def read_records(path: Path, required: list[str]) -> Iterator[tuple[str, dict]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return read_csv(path, required, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return read_parquet(path, required)
    raise DataError(str(path), None, None, "unknown file type (expected .jsonl, .csv, .tsv or .parquet)")


# ---------------------------------------------------------------- field helpers

def text(source: Path | str, where: str, name: str, value: Any, required: bool = False, empty: str = "empty value") -> str:
    """A text field: strings pass, None/"" are empty; numbers and other types are an error."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise DataError(str(source), where, name, f"expected text, got {type(value).__name__} {value!r}")
    value = value.strip()
    if required and not value:
        raise DataError(str(source), where, name, empty)
    return value


def scalar_text(source: Path | str, where: str, name: str, value: Any, join: str = ", ") -> str:
    """An item field: text, a number, or a list of texts (joined)."""
    if isinstance(value, bool):
        raise DataError(str(source), where, name, f"expected text, got bool {value!r}")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return join.join(text(source, where, name, v) for v in value if v not in (None, ""))
    return text(source, where, name, value)


def clip(value: str, limit: int = CLIP_CHARS) -> str:
    value = " ".join(value.split())
    if len(value) <= limit:
        return value
    return value[:limit].rsplit(" ", 1)[0] + " …"


def item_understanding_text(facts: dict[str, str]) -> str:
    """Gold item-understanding text: `brand=..; color=..; category=..`, present keys only."""
    return "; ".join(f"{k}={facts[k]}" for k in ("brand", "color", "category") if facts.get(k))


def length_slice(query: str) -> str:
    return "tail" if len(query.split()) >= TAIL_MIN_WORDS else "head"


def slices_for(query: str, query_type: str | None) -> list[str]:
    out = [length_slice(query)]
    if query_type:
        out.append(f"type:{query_type}")
    return out


def check_split_disjoint(source: str, splits: dict[str, list[Example]]) -> None:
    seen: dict[str, str] = {}
    for name, exs in splits.items():
        for ex in exs:
            other = seen.setdefault(ex.query_id, name)
            if other != name:
                raise DataError(source, f"example {ex.id}", "split", f"query {ex.query_id!r} is in both '{other}' and '{name}'")


def check_unique_ids(source: str, examples: list[Example]) -> None:
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise DataError(source, f"example {ex.id}", "id", "duplicate example id (the same pair twice?)")
        seen.add(ex.id)


# ---------------------------------------------------------------- the "files" loader

def _resolve_path(card: Card, data_dir: Path | None) -> Path:
    raw = card.options.get("path")
    if not raw:
        raise DataError(str(card.path), None, "options.path", "the 'files' loader needs options.path")
    p = Path(raw).expanduser()
    if not p.is_absolute():
        base = data_dir if data_dir is not None else (card.path.parent if card.path else Path.cwd())
        p = base / p
    return p


@LOADERS.register("files")
def load_files(card: Card, data_dir: Path | None) -> dict[str, list[Example]] | list[Example]:
    """Options: path, fields {query, label, query_id?, id?, item {name: col}, query_type?,
    steps? {step: col}, facts? {name: col}, split?}, label_map? {raw value: label}."""
    src = str(card.path)
    fields = card.options.get("fields")
    if not isinstance(fields, dict) or "query" not in fields or "label" not in fields:
        raise DataError(src, None, "options.fields", "needs a mapping with at least 'query' and 'label' columns")
    item_cols: dict = fields.get("item") or {}
    step_cols: dict = fields.get("steps") or {}
    fact_cols: dict = fields.get("facts") or {}
    for step in step_cols:
        if step not in STEPS:
            raise DataError(src, None, "options.fields.steps", f"unknown step {step!r} (known: {', '.join(STEPS)})")
    label_map = {str(k): v for k, v in (card.options.get("label_map") or {}).items()}
    path = _resolve_path(card, data_dir)
    required = [fields["query"], fields["label"], *item_cols.values()]
    required += [fields[k] for k in ("query_id", "id", "query_type", "split") if fields.get(k)]

    def col(row: dict, where: str, name: str) -> Any:
        if name not in row:  # JSONL rows carry their own keys
            raise DataError(str(path), where, name, "missing field")
        return row[name]

    examples: list[Example] = []
    split_of: dict[str, str] = {}
    for where, row in read_records(path, required):
        query = text(path, where, fields["query"], col(row, where, fields["query"]), required=True, empty="empty query")
        raw_label = col(row, where, fields["label"])
        if isinstance(raw_label, (int, float)) and not isinstance(raw_label, bool):
            raw_label = str(raw_label)
        raw_label = text(path, where, fields["label"], raw_label, required=True)
        label = label_map.get(raw_label, raw_label)
        if label not in card.labels:
            raise DataError(str(path), where, fields["label"], f"unknown label {raw_label!r} (card labels: {card.labels}; add a label_map?)")
        qid = query
        if fields.get("query_id"):
            qid = scalar_text(path, where, fields["query_id"], col(row, where, fields["query_id"]))
            if not qid:
                raise DataError(str(path), where, fields["query_id"], "empty query id")
        item = {}
        for name, c in item_cols.items():
            value = scalar_text(path, where, c, row.get(c), join=" > " if name == "category" else ", ")
            if value:
                item[name] = clip(value) if name in ("description", "bullet_points", "features") else value
        qtype = text(path, where, fields["query_type"], col(row, where, fields["query_type"])) if fields.get("query_type") else ""
        steps = {s: v for s, c in step_cols.items() if (v := scalar_text(path, where, c, row.get(c)))}
        steps.setdefault("relevance_judgment", label)
        facts = {k: v.lower() for k, c in fact_cols.items() if (v := scalar_text(path, where, c, row.get(c)))}
        ex_id = scalar_text(path, where, fields["id"], col(row, where, fields["id"])) if fields.get("id") else f"{card.name}-{where.split()[-1]}"
        ex = Example(id=ex_id, query_id=qid, query=query, item=item, label=label, query_type=qtype or "other",
                     steps=steps, facts=facts, slices=slices_for(query, qtype or None))
        if fields.get("split"):
            split_of[ex.id] = text(path, where, fields["split"], col(row, where, fields["split"]), required=True)
        examples.append(ex)
    check_unique_ids(str(path), examples)
    if not fields.get("split"):
        return examples
    splits: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        splits[split_of[ex.id]].append(ex)
    check_split_disjoint(str(path), splits)
    return dict(splits)
