"""Real-data loaders: the esci-us-150 join facts, the example fixtures, and bad-input errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from she_bench.data.cards import Card, find_card, load_benchmark
from she_bench.data.schema import DataError

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


def all_examples(bench):
    return [ex for exs in bench.splits.values() for ex in exs]


def write_card(tmp_path: Path, loader: str, data_dir: Path, **extra) -> Path:
    card = {"name": f"tmp-{loader}", "loader": loader, "data_dir": str(data_dir), **extra}
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def expect_error(card: Path, *parts: str) -> str:
    with pytest.raises(DataError) as err:
        load_benchmark(str(card))
    msg = str(err.value)
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------- esci-us-150 (real data)

US150_DIR = Card.from_yaml(find_card("esci-us-150")).resolve_data_dir()


@pytest.mark.skipif(not US150_DIR.is_dir(), reason=f"esci-us-150 data not present at {US150_DIR} (/work/shared absent)")
def test_esci_us_150_join_facts():
    bench = load_benchmark("esci-us-150")
    exs = all_examples(bench)
    assert len(exs) == 6678
    assert len({ex.query_id for ex in exs}) == 150
    assert len({ex.query for ex in exs}) == 150
    assert len({ex.id for ex in exs}) == 6678
    assert Counter(ex.label for ex in exs) == {"Exact": 3389, "Substitute": 1898, "Complement": 305, "Irrelevant": 1086}
    qtypes = Counter({ex.query_id: ex.query_type for ex in exs}.values())
    assert qtypes == {"parse_pattern": 57, "negations": 38, "other": 37, "behavioral": 18}
    # No query in two splits, and the split is by query with the card's fractions.
    split_of = {}
    for split, items in bench.splits.items():
        for ex in items:
            assert split_of.setdefault(ex.query_id, split) == split
    assert Counter(split_of.values()) == {"train": 90, "dev": 15, "test": 45}
    for ex in exs:
        assert ex.steps["relevance_judgment"] == ex.label
        assert ("head" in ex.slices) != ("tail" in ex.slices)
        assert f"type:{ex.query_type}" in ex.slices
        assert ex.item["title"]


# ---------------------------------------------------------------- fixtures load out of the box

def test_wands_fixture_loads():
    bench = load_benchmark("wands-example")
    exs = all_examples(bench)
    assert len(exs) == 8 and len({ex.query_id for ex in exs}) == 4
    assert bench.card.good_labels == ["Exact", "Partial"]
    assert Counter(ex.label for ex in exs) == {"Exact": 4, "Irrelevant": 3, "Partial": 1}
    ex = next(ex for ex in exs if ex.id == "wands-2-3")
    assert ex.item["category"] == "Furniture > Bedroom Furniture > Dressers & Chests"
    assert ex.steps["item_understanding"] == "category=dressers & chests"
    assert ex.slices == ["tail"]
    assert next(ex for ex in exs if ex.query_id == "3").query == 'fawkes 36" blue vanity'


def test_esci_parquet_fixture_loads():
    bench = load_benchmark("esci-full-example")
    assert set(bench.splits) == {"train", "dev", "test"}
    exs = all_examples(bench)
    # query 0 is not in the small version and query 5 is Spanish: both filtered out
    assert {ex.query_id for ex in exs} == {"1", "2", "3", "4"}
    assert {ex.query_id for ex in bench.splits["test"]} == {"4"}
    assert len(bench.splits["dev"]) > 0
    ex = next(ex for ex in exs if ex.id == "esci-1-B07R3TNQDM")
    assert ex.label == "Complement" and ex.query_type == "negations"
    assert ex.steps["item_understanding"] == "brand=dewalt; color=yellow"
    assert ex.item["bullet_points"] == "Brushless motor | LED light with 20-second delay"
    red = next(ex for ex in exs if ex.id == "esci-4-B07XYZ0001")
    assert "brand" not in red.item and red.facts == {"color": "red"}


def test_files_jsonl_fixture_loads():
    bench = load_benchmark("files-example")
    exs = all_examples(bench)
    assert len(exs) == 11 and len({ex.query_id for ex in exs}) == 5
    first = next(ex for ex in exs if ex.id == "files-example-1")
    assert first.label == "Exact" and first.item["category"] == "Shoes > Running"
    assert first.steps == {"item_understanding": "brand=nike; color=red; category=running", "relevance_judgment": "Exact"}
    assert "type:attribute" in first.slices


def test_files_csv_with_split_column(tmp_path):
    card = write_card(tmp_path, "files", FIXTURES / "user", options={
        "path": "pairs.csv",
        "fields": {"query": "query", "label": "relevance", "item": {"title": "product_title", "brand": "brand"}, "split": "split"},
    })
    bench = load_benchmark(str(card))
    assert {k: len(v) for k, v in bench.splits.items()} == {"train": 2, "test": 2}
    filters = next(ex for ex in bench.splits["test"] if ex.label == "Complement")
    assert filters.item == {"title": "Paper coffee filters"} and filters.query_id == "coffee grinder"


# ---------------------------------------------------------------- esci-us-150 errors

def make_us150(tmp_path: Path, judgments=None, docs=None, sources="query_id,source\n7,negations\n", raw_lines=None) -> Path:
    d = tmp_path / "us150"
    d.mkdir()
    if judgments is None:
        judgments = {"judgmentRatings": [{"query": "lamp without cord", "ratings": [{"docId": "A1", "rating": "100.000"}]}]}
    if judgments is not False:
        (d / "esci_us_judgments.json").write_text(json.dumps(judgments))
    docs = docs or [{"asin": "A1", "title": "Cordless lamp", "brand": "Lumi", "color": "Black", "category": ["Home", "Lamps"], "query_id": ["7", "9"]}]
    lines = raw_lines or [line for doc in docs for line in (json.dumps({"index": {"_id": doc["asin"]}}), json.dumps(doc))]
    with zipfile.ZipFile(d / "esci_us_ecommerce_shrunk.ndjson.zip", "w") as z:
        z.writestr("esci_us_ecommerce_shrunk.ndjson", "\n".join(lines) + "\n")
    (d / "shopping_queries_dataset_sources.csv").write_text(sources)
    return write_card(tmp_path, "esci-us-150", d)


def test_us150_tiny_ok(tmp_path):
    docs = [{"asin": "A1", "title": "Cordless lamp", "brand": "Lumi ", "color": "Black", "category": ["Home", "Lamps"], "query_id": ["7", "9"]},
            {"asin": "A2", "title": "Lamp cord", "brand": None, "color": None, "category": [], "query_id": ["8", "7"]}]
    judg = {"judgmentRatings": [{"query": "lamp without cord", "ratings": [{"docId": "A1", "rating": "100.000"}, {"docId": "A2", "rating": "1.000"}]}]}
    exs = sorted(all_examples(load_benchmark(str(make_us150(tmp_path, judgments=judg, docs=docs)))), key=lambda ex: ex.id)
    assert [(ex.id, ex.label, ex.query_type) for ex in exs] == [("esci-7-A1", "Exact", "negations"), ("esci-7-A2", "Complement", "negations")]
    assert exs[0].steps["item_understanding"] == "brand=lumi; color=black; category=lamps"
    assert exs[0].item["category"] == "Home > Lamps" and exs[1].item == {"title": "Lamp cord"}
    assert "item_understanding" not in exs[1].steps and exs[1].facts == {}


def test_us150_missing_file(tmp_path):
    expect_error(make_us150(tmp_path, judgments=False), "esci_us_judgments.json", "file not found")


def test_us150_missing_column(tmp_path):
    expect_error(make_us150(tmp_path, sources="query_id,kind\n7,negations\n"), "shopping_queries_dataset_sources.csv", "field 'source'", "missing column")


def test_us150_unknown_label(tmp_path):
    bad = {"judgmentRatings": [{"query": "lamp", "ratings": [{"docId": "A1", "rating": "5.000"}]}]}
    expect_error(make_us150(tmp_path, judgments=bad), "esci_us_judgments.json", "judgmentRatings[0].ratings[0]", "field 'rating'", "'5.000'")


def test_us150_empty_query(tmp_path):
    bad = {"judgmentRatings": [{"query": "  ", "ratings": []}]}
    expect_error(make_us150(tmp_path, judgments=bad), "esci_us_judgments.json", "judgmentRatings[0]", "field 'query'", "empty query")


def test_us150_wrong_type(tmp_path):
    bad = {"judgmentRatings": [{"query": 42, "ratings": []}]}
    expect_error(make_us150(tmp_path, judgments=bad), "esci_us_judgments.json", "judgmentRatings[0]", "field 'query'", "expected text, got int")


def test_us150_bad_json_line(tmp_path):
    lines = [json.dumps({"index": {"_id": "A1"}}), '{"asin": "A1", "title": ', "[1, 2]"]
    expect_error(make_us150(tmp_path, raw_lines=lines), "esci_us_ecommerce_shrunk.ndjson", "line 2", "invalid JSON")


def test_us150_json_line_not_object(tmp_path):
    lines = [json.dumps({"index": {"_id": "A1"}}), "[1, 2]"]
    expect_error(make_us150(tmp_path, raw_lines=lines), "esci_us_ecommerce_shrunk.ndjson", "line 2", "expected a JSON object")


@pytest.mark.parametrize("name, content, where", [
    ("esci_us_judgments.json", b'{"judgmentRatings": [\n{"query": "l\xe1mpara", "ratings": []}]}', "line 2"),
    ("esci_us_ecommerce_shrunk.ndjson.zip", b'{"index": {"_id": "A1"}}\n{"asin": "A1", "title": "L\xe9mpara"}\n', "line 2"),
], ids=["judgments", "products"])
def test_us150_not_utf8(tmp_path, name, content, where):
    card = make_us150(tmp_path)
    path = tmp_path / "us150" / name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("esci_us_ecommerce_shrunk.ndjson", content)
    else:
        path.write_bytes(content)
    offset = content.index(b"\xe1" if b"\xe1" in content else b"\xe9")
    in_line = offset - content.index(b"\n") - 1
    expect_error(card, name.removesuffix(".zip"), where, "not valid UTF-8", f"at byte offset {in_line} in the line, {offset} in the file")


def test_us150_duplicate_rating(tmp_path):
    docs = [{"asin": "A1", "title": "Lamp", "query_id": ["7", "9"]}, {"asin": "A2", "title": "Desk", "query_id": ["8", "7"]}]
    ratings = [{"docId": "A1", "rating": "100.000"}, {"docId": "A2", "rating": "0.000"}, {"docId": "A1", "rating": "0.000"}]
    expect_error(make_us150(tmp_path, judgments={"judgmentRatings": [{"query": "lamp", "ratings": ratings}]}, docs=docs),
                 "esci_us_judgments.json", "judgmentRatings[0].ratings[2]", "duplicate pair", "judgmentRatings[0].ratings[0]",
                 "(Exact, then Irrelevant)")


def test_us150_no_judgments(tmp_path):
    expect_error(make_us150(tmp_path, judgments={"judgmentRatings": []}), "card.yaml", "found no examples")


def test_us150_unresolvable_query_id(tmp_path):
    docs = [{"asin": "A1", "title": "Lamp", "query_id": ["7"]}, {"asin": "A2", "title": "Desk", "query_id": ["8"]}]
    bad = {"judgmentRatings": [{"query": "lamp", "ratings": [{"docId": "A1", "rating": "100.000"}, {"docId": "A2", "rating": "0.000"}]}]}
    expect_error(make_us150(tmp_path, judgments=bad, docs=docs), "judgmentRatings[0]", "field 'query_id'", "cannot resolve")


# ---------------------------------------------------------------- esci-parquet errors

def make_esci(tmp_path: Path, drop: str | None = None, **overrides) -> Path:
    d = tmp_path / "esci"
    d.mkdir()
    ex = {"example_id": [0, 1], "query": ["dewalt drill", "dewalt drill"], "query_id": [3, 3],
          "product_id": ["P1", "P2"], "product_locale": ["us", "us"], "esci_label": ["E", "I"],
          "small_version": [1, 1], "large_version": [1, 1], "split": ["train", "test"]}
    ex.update(overrides)
    if drop:
        ex.pop(drop)
    pq.write_table(pa.table(ex), d / "shopping_queries_dataset_examples.parquet")
    prods = {"product_id": ["P1", "P2"], "product_title": ["Drill", "Saw"], "product_description": [None, None],
             "product_bullet_point": [None, None], "product_brand": ["DEWALT", "Bosch"], "product_color": [None, None],
             "product_locale": ["us", "us"]}
    pq.write_table(pa.table(prods), d / "shopping_queries_dataset_products.parquet")
    return write_card(tmp_path, "esci-parquet", d)


def test_esci_parquet_missing_file(tmp_path):
    card = make_esci(tmp_path)
    (tmp_path / "esci" / "shopping_queries_dataset_products.parquet").unlink()
    expect_error(card, "shopping_queries_dataset_products.parquet", "file not found")


def test_esci_parquet_missing_column(tmp_path):
    expect_error(make_esci(tmp_path, drop="esci_label"), "shopping_queries_dataset_examples.parquet", "field 'esci_label'", "missing column")


def test_esci_parquet_unknown_label(tmp_path):
    expect_error(make_esci(tmp_path, esci_label=["E", "X"]), "shopping_queries_dataset_examples.parquet", "table row 2", "field 'esci_label'", "'X'")


def test_esci_parquet_empty_query(tmp_path):
    expect_error(make_esci(tmp_path, query=["dewalt drill", ""]), "shopping_queries_dataset_examples.parquet", "table row 2", "field 'query'", "empty query")


def test_esci_parquet_wrong_type(tmp_path):
    expect_error(make_esci(tmp_path, query=[1, 2]), "shopping_queries_dataset_examples.parquet", "field 'query'", "expected a text column")


def test_esci_parquet_duplicate_pair(tmp_path):
    expect_error(make_esci(tmp_path, product_id=["P1", "P1"]), "shopping_queries_dataset_examples.parquet",
                 "table row 2", "duplicate pair", "as table row 1", "(Exact, then Irrelevant)")


def test_esci_parquet_unknown_split(tmp_path):
    expect_error(make_esci(tmp_path, split=["train", "validation"]), "table row 2", "field 'split'", "'validation'")


# ---------------------------------------------------------------- wands errors

def make_wands(tmp_path: Path, query=None, label=None, **card) -> Path:
    d = tmp_path / "wands"
    d.mkdir()
    for name in ("query", "product", "label"):
        (d / f"{name}.csv").write_bytes((FIXTURES / "wands" / f"{name}.csv").read_bytes())
    if query is not None:
        (d / "query.csv").write_text(query)
    if label is not None:
        (d / "label.csv").write_text(label)
    return write_card(tmp_path, "wands", d, labels=["Exact", "Partial", "Irrelevant"], good_labels=["Exact", "Partial"], **card)


def test_wands_missing_file(tmp_path):
    card = make_wands(tmp_path)
    (tmp_path / "wands" / "label.csv").unlink()
    expect_error(card, "label.csv", "file not found")


def test_wands_missing_column(tmp_path):
    expect_error(make_wands(tmp_path, label="id\tquery_id\tproduct_id\n0\t0\t1\n"), "label.csv", "field 'label'", "missing column")


def test_wands_unknown_label(tmp_path):
    expect_error(make_wands(tmp_path, label="id\tquery_id\tproduct_id\tlabel\n0\t0\t1\tExact\n1\t0\t0\tRelevant\n"),
                 "label.csv", "data row 2", "field 'label'", "'Relevant'")


def test_wands_empty_query(tmp_path):
    expect_error(make_wands(tmp_path, query="query_id\tquery\tquery_class\n0\tsalon chair\tMassage Chairs\n1\t\tBeds\n"),
                 "query.csv", "data row 2", "field 'query'", "empty query")


def test_wands_wrong_type(tmp_path):
    expect_error(make_wands(tmp_path, label="id\tquery_id\tproduct_id\tlabel\n0\tsalon\t1\tExact\n"),
                 "label.csv", "data row 1", "field 'query_id'", "expected an integer id")


WANDS_DUPLICATE = "id\tquery_id\tproduct_id\tlabel\n0\t0\t1\tExact\n1\t0\t0\tIrrelevant\n2\t0\t1\tPartial\n"


def test_wands_duplicate_pair(tmp_path):
    expect_error(make_wands(tmp_path, label=WANDS_DUPLICATE), "label.csv", "data row 3", "duplicate pair", "as data row 1", "(Exact, then Partial)")


def test_wands_duplicate_pair_keep(tmp_path, capsys):
    exs = all_examples(load_benchmark(str(make_wands(tmp_path, label=WANDS_DUPLICATE, duplicates="keep"))))
    assert sorted((ex.id, ex.label) for ex in exs) == [("wands-0-0", "Irrelevant"), ("wands-0-1", "Exact"), ("wands-0-1#2", "Partial")]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("she-bench: warning:") and "label.csv" in line and "1 row repeats" in line
    assert "data row 3" in line and "every copy kept" in line


# ---------------------------------------------------------------- files errors

JSONL_FIELDS = {"query": "query", "label": "label", "item": {"title": "title"}}


def make_files(tmp_path: Path, name: str, content: str | bytes | None, fields=None, duplicates=None, **options) -> Path:
    d = tmp_path / "user"
    d.mkdir()
    if content is not None:
        (d / name).write_bytes(content.encode() if isinstance(content, str) else content)
    card = {"duplicates": duplicates} if duplicates else {}
    return write_card(tmp_path, "files", d, options={"path": name, "fields": fields or JSONL_FIELDS, **options}, **card)


def test_files_missing_file(tmp_path):
    expect_error(make_files(tmp_path, "nope.jsonl", None), "nope.jsonl", "file not found")


def test_files_missing_column_csv(tmp_path):
    expect_error(make_files(tmp_path, "p.csv", "query,title\nlamp,Lamp\n"), "p.csv", "field 'label'", "missing column")


def test_files_missing_field_jsonl(tmp_path):
    expect_error(make_files(tmp_path, "p.jsonl", '{"query": "lamp", "title": "Lamp"}\n'), "p.jsonl", "line 1", "field 'label'", "missing")


def test_files_unknown_label(tmp_path):
    content = '{"query": "lamp", "title": "Lamp", "label": 2}\n{"query": "lamp", "title": "Desk", "label": 7}\n'
    expect_error(make_files(tmp_path, "p.jsonl", content, label_map={"2": "Exact"}), "p.jsonl", "line 2", "field 'label'", "'7'")


def test_files_unknown_label_csv(tmp_path):
    content = "query,title,label\nlamp,Lamp,Exact\nlamp,Desk,Great\n"
    expect_error(make_files(tmp_path, "p.csv", content), "p.csv", "data row 2", "field 'label'", "'Great'")


def test_files_empty_query(tmp_path):
    content = "query,title,label\nlamp,Lamp,Exact\n ,Desk,Irrelevant\n"
    expect_error(make_files(tmp_path, "p.csv", content), "p.csv", "data row 2", "field 'query'", "empty query")


def test_files_wrong_type(tmp_path):
    expect_error(make_files(tmp_path, "p.jsonl", '{"query": 12345, "title": "Lamp", "label": "Exact"}\n'),
                 "p.jsonl", "line 1", "field 'query'", "expected text, got int")


def test_files_wrong_type_parquet(tmp_path):
    d = tmp_path / "user"
    d.mkdir()
    pq.write_table(pa.table({"query": ["lamp"], "title": [{"a": 1}], "label": ["Exact"]}), d / "p.parquet")
    card = write_card(tmp_path, "files", d, options={"path": "p.parquet", "fields": JSONL_FIELDS})
    expect_error(card, "p.parquet", "table row 1", "field 'title'", "expected text, got dict")


def test_files_bad_json_line(tmp_path):
    content = '{"query": "lamp", "title": "Lamp", "label": "Exact"}\n\n{"query": "lamp", "title": \n'
    expect_error(make_files(tmp_path, "p.jsonl", content), "p.jsonl", "line 3", "invalid JSON")


def test_files_json_line_not_object(tmp_path):
    expect_error(make_files(tmp_path, "p.jsonl", '["lamp", "Exact"]\n'), "p.jsonl", "line 1", "expected a JSON object, got list")


def test_files_query_in_two_splits(tmp_path):
    fields = {**JSONL_FIELDS, "split": "split"}
    content = "query,title,label,split\nlamp,Lamp,Exact,train\nlamp,Desk,Irrelevant,test\n"
    expect_error(make_files(tmp_path, "p.csv", content, fields=fields), "p.csv", "field 'split'", "both 'train' and 'test'")


@pytest.mark.parametrize("name, content, why", [
    ("p.jsonl", "", "no JSON lines in the file"),
    ("p.jsonl", "\n  \n", "no JSON lines in the file"),
    ("p.csv", "query,title,label\n", "a header but no data rows"),
    ("p.csv", "", "the file is empty"),
], ids=["jsonl-empty", "jsonl-blank", "csv-header-only", "csv-empty"])
def test_files_no_rows(tmp_path, name, content, why):
    expect_error(make_files(tmp_path, name, content), name, "no rows", why)


def test_files_no_rows_parquet(tmp_path):
    d = tmp_path / "user"
    d.mkdir()
    pq.write_table(pa.table({"query": pa.array([], pa.string()), "title": pa.array([], pa.string()),
                             "label": pa.array([], pa.string())}), d / "p.parquet")
    card = write_card(tmp_path, "files", d, options={"path": "p.parquet", "fields": JSONL_FIELDS})
    expect_error(card, "p.parquet", "no rows", "the table is empty")


def test_files_jsonl_not_utf8(tmp_path):
    good = b'{"query": "lamp", "title": "Lamp", "label": "Exact"}\n'
    bad = b'{"query": "caf\xe9 table", "title": "Table", "label": "Exact"}\n'  # Latin-1
    expect_error(make_files(tmp_path, "p.jsonl", good + bad), "p.jsonl", "line 2", "not valid UTF-8", "byte 0xe9",
                 f"at byte offset 14 in the line, {len(good) + 14} in the file")


def test_files_csv_not_utf8(tmp_path):
    content = b"query,title,label\nlamp,Lamp,Exact\nlamp,Caf\xe9 table,Irrelevant\n"
    expect_error(make_files(tmp_path, "p.csv", content), "p.csv", "data row 2", "field 'title'", "not valid UTF-8",
                 "byte 0xe9 at byte offset 3 in the value")


def test_files_bad_csv(tmp_path):
    content = "query,title,label\nlamp,Lamp,Exact\nlamp," + "x" * 200_000 + ",Exact\n"
    expect_error(make_files(tmp_path, "p.csv", content), "p.csv", "data row 2", "not valid CSV", "field larger than field limit")


def test_files_bad_parquet(tmp_path):
    expect_error(make_files(tmp_path, "p.parquet", b"PAR1 this is not parquet"), "p.parquet", "cannot read the Parquet file")


DUPLICATES = (
    '{"query": "lamp", "title": "Lamp", "label": "Exact"}\n'
    '{"query": "lamp", "title": "Desk", "label": "Irrelevant"}\n'
    '{"query": "lamp", "title": "Lamp", "label": "Irrelevant"}\n'
    '{"query": "desk", "title": "Desk", "label": "Exact"}\n'
    '{"query": "desk", "title": "Desk", "label": "Exact"}\n'
)


def test_files_duplicate_pair_is_an_error(tmp_path):
    expect_error(make_files(tmp_path, "p.jsonl", DUPLICATES), "p.jsonl", "line 3", "duplicate pair", "as line 1",
                 "(Exact, then Irrelevant)", "2 rows repeat")


def test_files_duplicate_pair_warn_drops_later_copies(tmp_path, capsys):
    exs = all_examples(load_benchmark(str(make_files(tmp_path, "p.jsonl", DUPLICATES, duplicates="warn"))))
    assert sorted((ex.id, ex.label) for ex in exs) == [("tmp-files-1", "Exact"), ("tmp-files-2", "Irrelevant"), ("tmp-files-4", "Exact")]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("she-bench: warning:") and "p.jsonl" in line and "2 rows repeat" in line
    assert "the first at line 3 (the same as line 1)" in line and "later copies dropped" in line


def test_files_duplicate_pair_keep(tmp_path, capsys):
    exs = all_examples(load_benchmark(str(make_files(tmp_path, "p.jsonl", DUPLICATES, duplicates="keep"))))
    assert len(exs) == 5
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("she-bench: warning:") and "2 rows repeat" in line and "every copy kept" in line


def test_files_duplicate_by_item_id(tmp_path):
    content = ('{"query": "lamp", "asin": "A1", "title": "Lamp", "label": "Exact"}\n'
               '{"query": "lamp", "asin": "A2", "title": "Lamp", "label": "Exact"}\n'
               '{"query": "lamp", "asin": "A1", "title": "Lamp, black", "label": "Exact"}\n')
    expect_error(make_files(tmp_path, "p.jsonl", content, fields={**JSONL_FIELDS, "item_id": "asin"}), "line 3", "as line 1")


def test_card_duplicates_value_is_checked(tmp_path):
    expect_error(make_files(tmp_path, "p.jsonl", DUPLICATES, duplicates="ignore"), "card.yaml", "field 'duplicates'", "expected error, warn or keep")


def test_files_nested_fields_by_dotted_path(tmp_path):
    rows = [{"query": "lamp", "label": "Exact", "product": {"name": "Desk lamp", "brand": {"name": "Lumi"}}},
            {"query": "lamp", "label": "Irrelevant", "product": {"name": "Nested"}, "product.name": "Literal key"}]
    fields = {"query": "query", "label": "label", "item": {"title": "product.name", "brand": "product.brand.name"}}
    card = make_files(tmp_path, "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows), fields=fields)
    items = sorted(ex.item["title"] + "/" + ex.item.get("brand", "") for ex in all_examples(load_benchmark(str(card))))
    assert items == ["Desk lamp/Lumi", "Literal key/"]  # a literal key holding the dot wins


def test_files_nested_fields_parquet_struct(tmp_path):
    d = tmp_path / "user"
    d.mkdir()
    pq.write_table(pa.table({"query": ["lamp"], "product": [{"name": "Desk lamp"}], "label": ["Exact"]}), d / "p.parquet")
    fields = {"query": "query", "label": "label", "item": {"title": "product.name"}}
    card = write_card(tmp_path, "files", d, options={"path": "p.parquet", "fields": fields})
    assert [ex.item for ex in all_examples(load_benchmark(str(card)))] == [{"title": "Desk lamp"}]


@pytest.mark.parametrize("name, content, fields, field, mapped", [
    ("p.jsonl", '{"query": "lamp", "product": {"name": "Lamp"}, "label": "Exact"}\n',
     {**JSONL_FIELDS, "item": {"title": "product.title"}}, "product.title", "fields.item.title"),
    ("p.csv", "query,title,brand,label\nlamp,Lamp,Lumi,Exact\n",
     {**JSONL_FIELDS, "facts": {"brand": "brnad"}}, "brnad", "fields.facts.brand"),
], ids=["jsonl-nested", "csv-typo"])
def test_files_field_no_row_holds(tmp_path, name, content, fields, field, mapped):
    expect_error(make_files(tmp_path, name, content, fields=fields), name, f"field '{field}'", "no row holds this field", mapped)


@pytest.mark.slow
@pytest.mark.parametrize("name, content", [
    ("p.jsonl", b'{"query": "caf\xe9", "title": "Cup", "label": "Exact"}\n'),
    ("p.csv", b"query,title,label\n"),
    ("p.jsonl", DUPLICATES.encode()),
    ("p.parquet", b"PAR1 this is not parquet"),
    ("p.csv", b"query,title,label\nlamp," + b"x" * 200_000 + b",Exact\n"),
], ids=["not-utf8", "no-rows", "duplicates", "not-parquet", "bad-csv"])
def test_cli_bad_file_is_one_line(tmp_path, name, content):
    card = make_files(tmp_path, name, content)
    proc = subprocess.run([sys.executable, "-m", "she_bench.cli", "data", "describe", str(card)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("she-bench: error:") and name in line
