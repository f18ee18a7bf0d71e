"""Amazon ESCI loaders: the 150-query US subset (esci-us-150) and the official parquet files."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from she_bench.data.cards import LOADERS, Card, split_by_query
from she_bench.data.files import (
    check_columns,
    check_split_disjoint,
    check_unique_ids,
    clip,
    decode_utf8,
    item_understanding_text,
    json_lines,
    need_data_dir,
    need_file,
    no_rows,
    parquet_errors,
    read_csv,
    resolve_duplicates,
    slices_for,
    text,
)
from she_bench.data.schema import DataError, Example

RATING_LABELS = {"100.000": "Exact", "10.000": "Substitute", "1.000": "Complement", "0.000": "Irrelevant"}
CODE_LABELS = {"E": "Exact", "S": "Substitute", "C": "Complement", "I": "Irrelevant"}

JUDGMENTS = "esci_us_judgments.json"
PRODUCTS_ZIP = "esci_us_ecommerce_shrunk.ndjson.zip"
SOURCES = "shopping_queries_dataset_sources.csv"


def read_sources(path: Path) -> dict[str, str]:
    """ESCI's query_id -> source (query type) file, read whole."""
    return {row["query_id"]: row["source"] for _, row in read_csv(path, ["query_id", "source"])
            if row["query_id"] is not None and row["source"] is not None}


def make_example(
    prefix: str, qid: str, pid: str, query: str, label: str, query_type: str | None,
    title: str, brand: str = "", color: str = "", category: list[str] | None = None,
    bullet_points: str = "", description: str = "",
) -> Example:
    category = [c.strip() for c in category or [] if c and c.strip()]
    item = {"title": title, "brand": brand, "color": color, "category": " > ".join(category),
            "bullet_points": clip(bullet_points.replace("\n", " | ")), "description": clip(description)}
    facts = {"brand": brand.lower(), "color": color.lower()}
    if category:
        facts["category"] = category[-1].lower()
        facts["category_path"] = " > ".join(category).lower()
    facts = {k: v for k, v in facts.items() if v}
    steps = {"item_understanding": item_understanding_text(facts), "relevance_judgment": label}
    return Example(
        id=f"{prefix}-{qid}-{pid}", query_id=qid, query=query,
        item={k: v for k, v in item.items() if v}, label=label, query_type=query_type or "other",
        steps={k: v for k, v in steps.items() if v}, facts=facts, slices=slices_for(query, query_type),
    )


# ---------------------------------------------------------------- esci-us-150

def _read_products(path: Path) -> dict[str, dict]:
    """The product docs of the OpenSearch bulk file inside the zip, by ASIN (action lines skipped)."""
    need_file(path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise DataError(str(path), None, None, f"not a zip file: {e}") from e
    with zf:
        members = [n for n in zf.namelist() if n.endswith((".ndjson", ".jsonl", ".json"))]
        if len(members) != 1:
            raise DataError(str(path), None, None, f"expected one .ndjson member, found {zf.namelist()}")
        source = f"{path}!{members[0]}"
        docs: dict[str, dict] = {}
        with zf.open(members[0]) as raw:
            for where, doc in json_lines(source, raw):
                if "index" in doc and len(doc) == 1:
                    continue
                asin = text(source, where, "asin", doc.get("asin"), required=True)
                doc["_where"] = where
                docs[asin] = doc
    return docs


def _read_judgments(path: Path) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """[(where, query, [(where, asin, rating)])] from the Search-Relevance-Workbench import file."""
    need_file(path)
    try:
        raw = json.loads(decode_utf8(path, path.read_bytes()))
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"line {e.lineno}", None, f"invalid JSON: {e.msg}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("judgmentRatings"), list):
        raise DataError(str(path), None, "judgmentRatings", "missing or not a list")
    out = []
    for i, q in enumerate(raw["judgmentRatings"]):
        qwhere = f"judgmentRatings[{i}]"
        if not isinstance(q, dict):
            raise DataError(str(path), qwhere, None, f"expected an object, got {type(q).__name__}")
        query = text(path, qwhere, "query", q.get("query"), required=True, empty="empty query")
        if not isinstance(q.get("ratings"), list):
            raise DataError(str(path), qwhere, "ratings", "missing or not a list")
        ratings = []
        for j, r in enumerate(q["ratings"]):
            rwhere = f"{qwhere}.ratings[{j}] (query {query!r})"
            if not isinstance(r, dict):
                raise DataError(str(path), rwhere, None, f"expected an object, got {type(r).__name__}")
            ratings.append((rwhere, text(path, rwhere, "docId", r.get("docId"), required=True),
                            text(path, rwhere, "rating", r.get("rating"), required=True)))
        out.append((qwhere, query, ratings))
    return out


@LOADERS.register("esci-us-150")
def load_esci_us_150(card: Card, data_dir: Path | None) -> list[Example]:
    data_dir = need_data_dir(card, data_dir)
    opts = card.options
    jpath = data_dir / opts.get("judgments", JUDGMENTS)
    zpath = data_dir / opts.get("products", PRODUCTS_ZIP)
    judgments = _read_judgments(jpath)
    docs = _read_products(zpath)
    sources = read_sources(data_dir / opts.get("sources", SOURCES))

    entries: list[tuple[str, tuple, Example]] = []
    for qwhere, query, ratings in judgments:
        # The query's ESCI id is the one id that every judged product lists.
        shared: set[str] | None = None
        rows = []
        for rwhere, asin, rating in ratings:
            if rating not in RATING_LABELS:
                raise DataError(str(jpath), rwhere, "rating",
                                f"unknown rating {rating!r} (known: {', '.join(RATING_LABELS)})")
            if asin not in docs:
                raise DataError(str(jpath), rwhere, "docId", f"no product doc with asin {asin!r} in {zpath.name}")
            doc = docs[asin]
            ids = doc.get("query_id")
            if not isinstance(ids, list):
                raise DataError(f"{zpath}", doc["_where"], "query_id",
                                f"expected a list of ESCI query ids, got {type(ids).__name__}")
            shared = {str(x) for x in ids} if shared is None else shared & {str(x) for x in ids}
            rows.append((rwhere, asin, RATING_LABELS[rating], doc))
        if not shared or len(shared) != 1:
            raise DataError(str(jpath), qwhere, "query_id", f"query {query!r}: cannot resolve one ESCI query id shared "
                            f"by all its products (candidates: {sorted(shared or [])})")
        qid = shared.pop()
        qtype = sources.get(qid)
        for rwhere, asin, label, doc in rows:
            w, src = doc["_where"], f"{zpath}"
            category = doc.get("category") or []
            if not isinstance(category, list):
                raise DataError(src, w, "category", f"expected a list, got {type(category).__name__}")
            entries.append((rwhere, (qid, asin), make_example(
                "esci", qid, asin, query, label, qtype,
                title=text(src, w, "title", doc.get("title"), required=True),
                brand=text(src, w, "brand", doc.get("brand")), color=text(src, w, "color", doc.get("color")),
                category=[text(src, w, "category", c) for c in category],
                bullet_points=text(src, w, "bullet_points", doc.get("bullet_points")),
                description=text(src, w, "description", doc.get("description")),
            )))
    examples = [ex for _, ex in resolve_duplicates(card, jpath, entries)]
    check_unique_ids(str(jpath), examples)
    return examples


# ---------------------------------------------------------------- official parquet files

EXAMPLE_COLS = ["query", "query_id", "product_id", "product_locale", "esci_label"]
PRODUCT_COLS = ["product_id", "product_title", "product_description", "product_bullet_point",
                "product_brand", "product_color", "product_locale"]


def _parquet_rows(path: Path, required: list[str], optional: list[str], locale: str, version: str | None,
                  product_ids: set[str] | None = None) -> list[dict]:
    """Rows of `path` for one locale (version flag, product ids), filtered column-wise with pyarrow."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    need_file(path)
    with parquet_errors(path):
        schema = pq.read_schema(path)
        check_columns(path, schema.names, required)
        for name in ("query", "product_title"):
            if name in required and not (pa.types.is_string(schema.field(name).type)
                                         or pa.types.is_large_string(schema.field(name).type)):
                raise DataError(str(path), None, name, f"expected a text column, got {schema.field(name).type}")
        flags = [f"{version}_version"] if version else []
        check_columns(path, schema.names, flags)
        table = pq.read_table(path, columns=required + flags + [c for c in optional if c in schema.names])
        if table.num_rows == 0:
            raise no_rows(path, "the table is empty")
        table = table.append_column("_row", pa.array(range(1, table.num_rows + 1)))
        mask = pc.equal(table["product_locale"], locale)
        for flag in flags:
            mask = pc.and_(mask, pc.equal(table[flag], 1))
        if product_ids is not None:
            mask = pc.and_(mask, pc.is_in(table["product_id"], value_set=pa.array(sorted(product_ids), pa.string())))
        return table.filter(mask).to_pylist()


@LOADERS.register("esci-parquet")
def load_esci_parquet(card: Card, data_dir: Path | None) -> dict[str, list[Example]] | list[Example]:
    """Options: locale ("us"), version ("small", "large" or null for all), sources (csv name,
    used when present), dev_fraction (share of train queries moved to dev, default 0.1)."""
    data_dir = need_data_dir(card, data_dir)
    opts = card.options
    locale, version = opts.get("locale", "us"), opts.get("version", "small")
    epath = data_dir / opts.get("examples", "shopping_queries_dataset_examples.parquet")
    ppath = data_dir / opts.get("products", "shopping_queries_dataset_products.parquet")
    spath = data_dir / opts.get("sources", SOURCES)
    sources = read_sources(spath) if spath.is_file() else {}

    rows = _parquet_rows(epath, EXAMPLE_COLS, ["split", "example_id"], locale, version)
    wanted = {r["product_id"] for r in rows if isinstance(r["product_id"], str)}
    products = {p["product_id"]: p for p in _parquet_rows(ppath, PRODUCT_COLS, [], locale, None, wanted)}

    def ptext(p: dict, name: str) -> str:
        return text(ppath, f"table row {p['_row']}", name, p.get(name))

    entries: list[tuple[str, tuple, Example]] = []
    split_of: dict[str, str] = {}
    for r in rows:
        where = f"table row {r['_row']}"
        query = text(epath, where, "query", r["query"], required=True, empty="empty query")
        code = r["esci_label"]
        if code not in CODE_LABELS:
            raise DataError(str(epath), where, "esci_label", f"unknown label {code!r} (known: E, S, C, I)")
        pid = text(epath, where, "product_id", r["product_id"], required=True)
        if pid not in products:
            raise DataError(str(epath), where, "product_id",
                            f"no product {pid!r} for locale {locale!r} in {ppath.name}")
        p, qid = products[pid], str(r["query_id"])
        ex = make_example(
            "esci", qid, pid, query, CODE_LABELS[code], sources.get(qid),
            title=ptext(p, "product_title"), brand=ptext(p, "product_brand"), color=ptext(p, "product_color"),
            bullet_points=ptext(p, "product_bullet_point"), description=ptext(p, "product_description"),
        )
        entries.append((where, (qid, pid), ex))
        if "split" in r:
            split = r["split"]
            if split not in ("train", "test"):
                raise DataError(str(epath), where, "split", f"unknown split {split!r} (expected train or test)")
            split_of[where] = split
    kept = resolve_duplicates(card, epath, entries)
    examples = [ex for _, ex in kept]
    check_unique_ids(str(epath), examples)
    if not split_of:
        return examples
    train = [ex for where, ex in kept if split_of[where] == "train"]
    test = [ex for where, ex in kept if split_of[where] == "test"]
    dev_fraction = float(opts.get("dev_fraction", 0.1))
    seed = int(card.split.get("seed", 0))
    carved = split_by_query(train, {"train": 1 - dev_fraction, "dev": dev_fraction}, seed)
    splits = {"train": carved["train"], "dev": carved["dev"], "test": test}
    check_split_disjoint(str(epath), splits)
    return splits
