"""Classic baselines a reviewer expects beside the LLM rows, fitted on the train split with scikit-learn.

    majority  the train split's most frequent label for every pair
    lexical   query/item features into a class-balanced gradient-boosted classifier:
              token overlap with the title and the whole item, brand, colour and category
              matches, TF-IDF cosine, a BM25 score, query length

They write no reasoning, so their step metrics are n/a; they are scored by the same label metrics
and slices as every run. A classic method is `predict(ctx) -> {example id: label}` over the
evaluated split, registered with `classic=True`; nothing is saved but its predictions (it refits
in seconds), so no fitted object is ever unpickled.
"""
from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from she_bench.data.selection import eval_examples
from she_bench.methods import METHODS

TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(str(text).lower())


def classic(name: str):
    def add(fn):
        fn.classic = True
        return METHODS.register(name)(fn)

    return add


@classic("majority")
def majority(ctx) -> dict[str, str]:
    counts = Counter(ex.label for ex in ctx.bench.splits["train"])
    label = max(ctx.bench.labels, key=lambda lab: (counts.get(lab, 0), -ctx.bench.labels.index(lab)))
    return {ex.id: label for ex in eval_examples(ctx.bench, ctx.cfg)}


def item_text(ex) -> str:
    return " ".join(str(v) for v in ex.item.values())


class LexicalFeatures:
    """Features of a (query, item) pair; document frequencies come from the train split's items."""

    NAMES = ("title_overlap", "item_overlap", "query_in_title", "brand_in_query", "brand_known", "color_in_query",
             "color_known", "category_overlap", "tfidf_cosine", "bm25", "query_tokens", "unmatched_query_tokens")

    def __init__(self, train):
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = [item_text(ex) for ex in train]
        self.tfidf = TfidfVectorizer(tokenizer=tokens, token_pattern=None, lowercase=False, sublinear_tf=True)
        self.tfidf.fit(docs + [ex.query for ex in train])
        df = Counter(t for d in docs for t in set(tokens(d)))
        self.n_docs, self.df = len(docs), df
        self.avg_len = float(np.mean([len(tokens(d)) for d in docs])) if docs else 1.0

    def bm25(self, query: list[str], doc: list[str], k1: float = 1.2, b: float = 0.75) -> float:
        tf, score = Counter(doc), 0.0
        for t in set(query):
            if tf[t]:
                idf = math.log(1 + (self.n_docs - self.df.get(t, 0) + 0.5) / (self.df.get(t, 0) + 0.5))
                score += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(doc) / max(self.avg_len, 1e-9)))
        return score

    def __call__(self, examples) -> np.ndarray:
        q_vec = self.tfidf.transform([ex.query for ex in examples])
        i_vec = self.tfidf.transform([item_text(ex) for ex in examples])
        cosine = np.asarray(q_vec.multiply(i_vec).sum(axis=1)).ravel()  # rows are L2-normalised
        rows = []
        for ex, cos in zip(examples, cosine):
            q = tokens(ex.query)
            qs = set(q) or {""}
            title, whole = set(tokens(ex.item.get("title", ""))), tokens(item_text(ex))
            brand, color = tokens(ex.item.get("brand", "")), tokens(ex.item.get("color", ""))
            category = set(tokens(ex.item.get("category", "")))
            rows.append([
                len(qs & title) / len(qs), len(qs & set(whole)) / len(qs),
                float(bool(q) and " ".join(q) in " ".join(tokens(ex.item.get("title", "")))),
                float(bool(brand) and set(brand) <= qs), float(bool(brand)),
                float(bool(color) and bool(set(color) & qs)), float(bool(color)),
                len(qs & category) / len(qs), float(cos), self.bm25(q, whole), float(len(q)),
                float(len(qs - set(whole))),
            ])
        return np.array(rows, dtype=np.float64)


@classic("lexical")
def lexical(ctx) -> dict[str, str]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    train = ctx.bench.splits["train"]
    features = LexicalFeatures(train)
    model = HistGradientBoostingClassifier(class_weight="balanced", max_iter=200, learning_rate=0.1,
                                           random_state=ctx.cfg.seed)
    model.fit(features(train), [ex.label for ex in train])
    examples = eval_examples(ctx.bench, ctx.cfg)
    return dict(zip((ex.id for ex in examples), model.predict(features(examples))))
