"""Generic user data (JSONL, CSV or Parquet) declared by a card, plus the readers and field
helpers the other real-data loaders share.

Error positions: JSONL reports 1-based file lines ("line N"), CSV 1-based data rows with the
header not counted ("data row N"), Parquet 1-based table rows ("table row N"). Bad UTF-8 in
JSONL names the line and 0-based byte offsets in the line and in the file; in CSV, the data
row, the column and the 0-based byte offset in that value.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Iterator

from she_bench.data.cards import LOADERS, Card
from she_bench.data.schema import STEPS, DataError, Example

TAIL_MIN_WORDS = 5  # a query with at least this many words is "tail" (long-tail), else "head"
CLIP_CHARS = 300
MISSING = object()  # a field the row does not hold
ESCAPED = re.compile("[\udc80-\udcff]")  # undecodable bytes, as the surrogateescape handler keeps them


# ---------------------------------------------------------------- readers

def need_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(str(path), None, None, "file not found")
    return path


def need_data_dir(card: Card, data_dir: Path | None) -> Path:
    if data_dir is None:
        raise DataError(str(card.path), None, "data_dir",
                        f"loader '{card.loader}' needs a data_dir (set it in the card or pass one)")
    if not data_dir.is_dir():
        raise DataError(str(data_dir), None, None, f"data folder not found (card {card.path})")
    return data_dir


def check_columns(source: Path | str, have: list[str], required: list[str]) -> None:
    for col in required:
        if col not in have:
            raise DataError(str(source), None, col, f"missing column (columns present: {', '.join(have)})")


def decode_utf8(source: Path | str, data: bytes, first_line: int = 1, base: int = 0) -> str:
    """`data` as text; bad bytes are a DataError naming the line and the byte offsets.
    `first_line` and `base` are the line number and the file offset where `data` starts."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = first_line + data.count(b"\n", 0, e.start)
        raise DataError(str(source), f"line {line}", None,
                        f"not valid UTF-8: byte 0x{data[e.start]:02x} at byte offset {e.start - line_start} in the "
                        f"line, {base + e.start} in the file (0-based); save the file as UTF-8") from e


def json_lines(source: Path | str, stream: IO[bytes]) -> Iterator[tuple[str, dict]]:
    """Yield ("line N", object) for each non-blank line of a binary JSONL stream."""
    offset = 0
    for n, raw in enumerate(stream, 1):
        line = decode_utf8(source, raw, n, offset)
        offset += len(raw)
        if n == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(str(source), f"line {n}", None, f"invalid JSON: {e.msg}") from e
        if not isinstance(obj, dict):
            raise DataError(str(source), f"line {n}", None, f"expected a JSON object, got {type(obj).__name__}")
        yield f"line {n}", obj


def no_rows(path: Path, why: str) -> DataError:
    return DataError(str(path), None, None, f"no rows ({why})")


def _bad_utf8(value: str) -> str | None:
    """What is wrong with a value read with surrogateescape, or None when it decoded."""
    hit = ESCAPED.search(value)
    if hit is None:
        return None
    offset = len(value[:hit.start()].encode("utf-8", "surrogateescape"))
    byte = value[hit.start()].encode("utf-8", "surrogateescape")[0]
    return f"not valid UTF-8: byte 0x{byte:02x} at byte offset {offset} in the value (0-based); save the file as UTF-8"


def _check_utf8(path: Path, where: str, row: dict) -> None:
    """CSV is read with surrogateescape so that a bad byte names its row and column, not a block
    of the file; a row is searched column by column only when its joined values hold one."""
    if not ESCAPED.search("".join(v for v in row.values() if isinstance(v, str))):
        return
    name, problem = next((k, p) for k, v in row.items() if isinstance(v, str) and (p := _bad_utf8(v)))
    raise DataError(str(path), where, name, problem)


def _check_header(path: Path, header: list[str]) -> None:
    for i, name in enumerate(header, 1):
        if problem := _bad_utf8(name):
            raise DataError(str(path), "header", None, f"column {i}: {problem}")


def read_csv(path: Path, required: list[str], delimiter: str = ",") -> Iterator[tuple[str, dict]]:
    """Yield ("data row N", row) for each data row, after checking the header."""
    need_file(path)
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        n = 0
        try:
            header = reader.fieldnames
            if header is None:
                raise no_rows(path, "the file is empty")
            _check_header(path, header)
            check_columns(path, list(header), required)
            for n, row in enumerate(reader, 1):
                _check_utf8(path, f"data row {n}", row)
                yield f"data row {n}", row
        except csv.Error as e:
            raise DataError(str(path), f"data row {n + 1} (line {reader.line_num})", None, f"not valid CSV: {e}") from e
    if n == 0:
        raise no_rows(path, "a header but no data rows")


def read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield ("line N", object) for each non-blank line."""
    need_file(path)
    empty = True
    with path.open("rb") as f:
        for where, obj in json_lines(path, f):
            empty = False
            yield where, obj
    if empty:
        raise no_rows(path, "no JSON lines in the file")


@contextmanager
def parquet_errors(path: Path) -> Iterator[None]:
    """pyarrow's errors on an unreadable file (or column) as a DataError naming the file."""
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, UnicodeDecodeError) as e:
        problem = " ".join(str(e).split())  # one line, whatever pyarrow wrote
        raise DataError(str(path), None, None, f"cannot read the Parquet file: {problem}") from e


def has_column(names: list[str], name: str) -> bool:
    """A column, or a dotted path into a struct column."""
    return name in names or name.split(".", 1)[0] in names


def read_parquet(path: Path, required: list[str]) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    need_file(path)
    with parquet_errors(path):
        table = pq.read_table(path)
        check_columns(path, table.column_names, [c for c in required if not has_column(table.column_names, c)])
        if table.num_rows == 0:
            raise no_rows(path, "the table is empty")
        rows = table.to_pylist()
    for n, row in enumerate(rows, 1):
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

def lookup(row: dict, name: str) -> Any:
    """row[name]; else, for a dotted name, the path into nested objects (`product.name` reads
    row["product"]["name"]). A literal key wins over a path. MISSING when the row holds neither."""
    if name in row:
        return row[name]
    node: Any = row
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def text(source: Path | str, where: str, name: str, value: Any, required: bool = False,
         empty: str = "empty value") -> str:
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
                raise DataError(source, f"example {ex.id}", "split",
                                f"query {ex.query_id!r} is in both '{other}' and '{name}'")


def check_unique_ids(source: str, examples: list[Example]) -> None:
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise DataError(source, f"example {ex.id}", "id", "duplicate example id")
        seen.add(ex.id)


def _unused_id(ex_id: str, ids: set[str]) -> str:
    n = 1
    out = ex_id
    while out in ids:
        n += 1
        out = f"{ex_id}#{n}"
    return out


def resolve_duplicates(card: Card, source: Path | str,
                       entries: list[tuple[str, tuple, Example]]) -> list[tuple[str, Example]]:
    """Apply the card's `duplicates` rule to (where, pair key, example) in file order; return the
    kept (where, example). The pair key is (query id, item identity). error: a DataError naming
    both rows; warn: one line on stderr, the first copy kept; keep: the same line, every copy
    kept (a repeated example id gets #2, #3, ...)."""
    first: dict[tuple, tuple[str, Example]] = {}
    repeats: list[tuple[str, Example, str, Example]] = []
    kept: list[tuple[str, Example]] = []
    ids: set[str] = set()
    for where, key, ex in entries:
        if key in first:
            repeats.append((where, ex, *first[key]))
            if card.duplicates != "keep":
                continue
            ex = replace(ex, id=_unused_id(ex.id, ids))
        else:
            first[key] = (where, ex)
        ids.add(ex.id)
        kept.append((where, ex))
    if repeats:
        _report_duplicates(card, source, repeats)
    return kept


def _report_duplicates(card: Card, source: Path | str, repeats: list[tuple[str, Example, str, Example]]) -> None:
    where, ex, where0, ex0 = repeats[0]
    differ = f" with another label ({ex0.label}, then {ex.label})" if ex.label != ex0.label else ""
    count = (f"{len(repeats)} row{'s' if len(repeats) > 1 else ''} repeat{'' if len(repeats) > 1 else 's'} "
             "an earlier (query, item) pair")
    if card.duplicates == "error":
        raise DataError(str(source), where, None,
                        f"duplicate pair: the same query and item as {where0}{differ}; {count} "
                        "(the card's `duplicates: warn` drops the later copies, `duplicates: keep` keeps them)")
    action = "later copies dropped" if card.duplicates == "warn" else "every copy kept"
    print(f"she-bench: warning: {source}: {count}, the first at {where} (the same as {where0}){differ}; "
          f"{action} (duplicates: {card.duplicates})", file=sys.stderr)


# ---------------------------------------------------------------- the "files" loader

FIELD_GROUPS = ("item", "steps", "facts")  # {name: column} mappings; a row may lack a column
CLIPPED = ("description", "bullet_points", "features")


def _resolve_path(card: Card, data_dir: Path | None) -> Path:
    raw = card.options.get("path")
    if not raw:
        raise DataError(str(card.path), None, "options.path", "the 'files' loader needs options.path")
    p = Path(raw).expanduser()
    if not p.is_absolute():
        base = data_dir if data_dir is not None else (card.path.parent if card.path else Path.cwd())
        p = base / p
    return p


def _check_fields(card: Card) -> dict:
    src = str(card.path)
    fields = card.options.get("fields")
    if not isinstance(fields, dict) or "query" not in fields or "label" not in fields or not fields.get("item"):
        raise DataError(src, None, "options.fields",
                        "needs a mapping with at least 'query', 'label' and 'item' ({name: column})")
    for group in FIELD_GROUPS:
        if not isinstance(fields.get(group) or {}, dict):
            raise DataError(src, None, f"options.fields.{group}", "expected a mapping {name: column}")
    named = {f"options.fields.{k}": v for k, v in fields.items()
             if k not in FIELD_GROUPS and (v is not None or k in ("query", "label"))}  # `query_id:` (null) is unset
    named |= {f"options.fields.{g}.{k}": v for g in FIELD_GROUPS for k, v in (fields.get(g) or {}).items()}
    for key, column in named.items():
        if not isinstance(column, str) or not column:
            raise DataError(src, None, key, "expected a column name (nested keys take a dotted path, "
                            f"e.g. product.name), got {column!r}")
    for step in fields.get("steps") or {}:
        if step not in STEPS:
            raise DataError(src, None, "options.fields.steps", f"unknown step {step!r} (known: {', '.join(STEPS)})")
    return fields


def _required(fields: dict) -> list[str]:
    """Columns a CSV header or Parquet schema must have."""
    return [fields["query"], fields["label"], *fields["item"].values(),
            *(fields[k] for k in ("query_id", "id", "item_id", "query_type", "split") if fields.get(k))]


def _example(card: Card, path: Path, fields: dict, label_map: dict, where: str,
             row: dict) -> tuple[Example, tuple, str | None]:
    """One row's example, its (query, item) key and its split (None without a split column)."""
    def col(name: str) -> Any:  # a column every row must hold
        value = lookup(row, name)
        if value is MISSING:
            raise DataError(str(path), where, name, "missing field")
        return value

    def opt(name: str) -> Any:
        value = lookup(row, name)
        return None if value is MISSING else value

    def ident(key: str, what: str) -> str:
        value = scalar_text(path, where, fields[key], col(fields[key]))
        if not value:
            raise DataError(str(path), where, fields[key], f"empty {what}")
        return value

    query = text(path, where, fields["query"], col(fields["query"]), required=True, empty="empty query")
    raw_label = col(fields["label"])
    if isinstance(raw_label, (int, float)) and not isinstance(raw_label, bool):
        raw_label = str(raw_label)
    raw_label = text(path, where, fields["label"], raw_label, required=True)
    label = label_map.get(raw_label, raw_label)
    if label not in card.labels:
        raise DataError(str(path), where, fields["label"],
                        f"unknown label {raw_label!r} (card labels: {card.labels}; add a label_map?)")
    qid = ident("query_id", "query id") if fields.get("query_id") else query
    values = {name: scalar_text(path, where, c, opt(c), join=" > " if name == "category" else ", ")
              for name, c in fields["item"].items()}
    item_key = ("id", ident("item_id", "item id")) if fields.get("item_id") else tuple(sorted(values.items()))
    qtype = text(path, where, fields["query_type"], col(fields["query_type"])) if fields.get("query_type") else ""
    steps = {s: v for s, c in (fields.get("steps") or {}).items() if (v := scalar_text(path, where, c, opt(c)))}
    steps.setdefault("relevance_judgment", label)
    facts = {k: v.lower() for k, c in (fields.get("facts") or {}).items() if (v := scalar_text(path, where, c, opt(c)))}
    ex_id = ident("id", "id") if fields.get("id") else f"{card.name}-{where.split()[-1]}"
    ex = Example(id=ex_id, query_id=qid, query=query,
                 item={k: clip(v) if k in CLIPPED else v for k, v in values.items() if v},
                 label=label, query_type=qtype or "other", steps=steps, facts=facts,
                 slices=slices_for(query, qtype or None))
    split = text(path, where, fields["split"], col(fields["split"]), required=True) if fields.get("split") else None
    return ex, (qid, item_key), split


@LOADERS.register("files")
def load_files(card: Card, data_dir: Path | None) -> dict[str, list[Example]] | list[Example]:
    """Options: path, fields {query, label, item {name: column}, query_id?, id?, item_id?,
    query_type?, steps? {step: column}, facts? {name: column}, split?}, label_map? {raw value: label}.

    A column may be a dotted path into nested JSON (or Parquet struct) values: `product.name`
    reads row["product"]["name"]; a key that itself holds the dot wins. A pair is the query id
    and the item (`item_id` when mapped, else every mapped item field); the card's
    `duplicates` says what a repeated pair does."""
    fields = _check_fields(card)
    path = _resolve_path(card, data_dir)
    label_map = {str(k): v for k, v in (card.options.get("label_map") or {}).items()}
    mapped = {c: f"fields.{g}.{name}" for g in FIELD_GROUPS for name, c in (fields.get(g) or {}).items()}
    unheld = set(mapped)
    entries: list[tuple[str, tuple, Example]] = []
    split_of: dict[str, str | None] = {}
    for where, row in read_records(path, _required(fields)):
        unheld = {c for c in unheld if lookup(row, c) is MISSING}
        ex, key, split_of[where] = _example(card, path, fields, label_map, where, row)
        entries.append((where, key, ex))
    if unheld:
        c = sorted(unheld)[0]
        raise DataError(str(path), None, c, f"no row holds this field ({mapped[c]} in the card; a typo? "
                        "nested JSON keys take a dotted path, e.g. product.name)")
    kept = resolve_duplicates(card, path, entries)
    examples = [ex for _, ex in kept]
    check_unique_ids(str(path), examples)
    if not fields.get("split"):
        return examples
    splits: dict[str, list[Example]] = defaultdict(list)
    for where, ex in kept:
        splits[split_of[where]].append(ex)
    check_split_disjoint(str(path), splits)
    return dict(splits)
