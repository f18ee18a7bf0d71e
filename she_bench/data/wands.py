"""WANDS (Wayfair ANnotation DataSet): query.csv, product.csv and label.csv, tab-separated."""
from __future__ import annotations

from pathlib import Path

from she_bench.data.cards import LOADERS, Card
from she_bench.data.files import (
    check_unique_ids,
    clip,
    item_understanding_text,
    need_data_dir,
    read_csv,
    resolve_duplicates,
    slices_for,
    text,
)
from she_bench.data.schema import DataError, Example

LABELS = ("Exact", "Partial", "Irrelevant")
HIERARCHY_COLS = ("category hierarchy", "category_hierarchy")  # the file and the README disagree


def _int_id(path: Path, where: str, name: str, value: str | None) -> str:
    value = (value or "").strip()
    if not value.isdigit():
        raise DataError(str(path), where, name, f"expected an integer id, got {value!r}")
    return value


@LOADERS.register("wands")
def load_wands(card: Card, data_dir: Path | None) -> list[Example]:
    data_dir = need_data_dir(card, data_dir)
    delim = card.options.get("delimiter", "\t")
    qpath, ppath, lpath = (data_dir / card.options.get(k, f"{k}.csv") for k in ("query", "product", "label"))

    queries: dict[str, tuple[str, str]] = {}
    for where, row in read_csv(qpath, ["query_id", "query", "query_class"], delim):
        qid = _int_id(qpath, where, "query_id", row["query_id"])
        queries[qid] = (text(qpath, where, "query", row["query"], required=True, empty="empty query"),
                        text(qpath, where, "query_class", row["query_class"]))

    products: dict[str, dict[str, str]] = {}
    rows = read_csv(ppath, ["product_id", "product_name", "product_class", "product_description", "product_features"],
                    delim)
    for where, row in rows:
        pid = _int_id(ppath, where, "product_id", row["product_id"])
        hier_col = next((c for c in HIERARCHY_COLS if c in row), None)
        if hier_col is None:
            raise DataError(str(ppath), None, "category hierarchy",
                            f"missing column (columns present: {', '.join(row)})")
        hierarchy = [c.strip() for c in text(ppath, where, hier_col, row[hier_col]).split("/") if c.strip()]
        pclass = text(ppath, where, "product_class", row["product_class"])
        features = text(ppath, where, "product_features", row["product_features"])
        products[pid] = {
            "title": text(ppath, where, "product_name", row["product_name"], required=True),
            "product_class": pclass,
            "category": " > ".join(hierarchy),
            "description": clip(text(ppath, where, "product_description", row["product_description"])),
            "features": clip(features.replace("|", "; ")),
            "_leaf": (pclass or (hierarchy[-1] if hierarchy else "")).lower(),
        }

    entries: list[tuple[str, tuple, Example]] = []
    for where, row in read_csv(lpath, ["id", "query_id", "product_id", "label"], delim):
        qid = _int_id(lpath, where, "query_id", row["query_id"])
        pid = _int_id(lpath, where, "product_id", row["product_id"])
        label = text(lpath, where, "label", row["label"], required=True)
        if label not in LABELS:
            raise DataError(str(lpath), where, "label", f"unknown label {label!r} (known: {', '.join(LABELS)})")
        if qid not in queries:
            raise DataError(str(lpath), where, "query_id", f"no query {qid} in {qpath.name}")
        if pid not in products:
            raise DataError(str(lpath), where, "product_id", f"no product {pid} in {ppath.name}")
        query, qclass = queries[qid]
        p = products[pid]
        facts = {k: v for k, v in {"category": p["_leaf"], "category_path": p["category"].lower(),
                                   "query_class": qclass.lower()}.items() if v}
        steps = {"item_understanding": item_understanding_text(facts), "relevance_judgment": label}
        entries.append((where, (qid, pid), Example(
            id=f"wands-{qid}-{pid}", query_id=qid, query=query,
            item={k: v for k, v in p.items() if v and not k.startswith("_")}, label=label,
            steps={k: v for k, v in steps.items() if v}, facts=facts, slices=slices_for(query, None),
        )))
    examples = [ex for _, ex in resolve_duplicates(card, lpath, entries)]
    check_unique_ids(str(lpath), examples)
    return examples
