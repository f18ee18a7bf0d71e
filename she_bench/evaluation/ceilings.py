"""Shortcut ceilings: how well a verdict can be guessed without doing the step's reasoning.

A ceiling is the verdict accuracy (reasoning/verdicts.py) of a predictor that cannot do the step: fitted
on the train split, scored on the evaluated one. A policy whose verdict accuracy sits at the ceiling may
be guessing; one well above it reasons.

- *item-blind*: from the query text alone; the ceiling of category matching.
- *attribute-blind*: from the query text and the item's category; the ceiling of attribute matching and
  of the label (the relation is then known, the item's attributes are not).

The predictor is a logistic regression (scikit-learn) on binary features: the query's words and word
pairs, and for attribute-blind also the item's category, whether the query names it, and their crosses
with every query word, so it can learn rules of the form "this kind of query with this kind of item
usually gets this verdict". The
constant guess (the train split's most frequent verdict) is the other blind predictor; the ceiling is the
better of the two on the evaluated pairs, so a weak fit never lowers the bar. Copy steps have no
ceiling: they decide nothing.
"""
from __future__ import annotations

import re
from collections import Counter

from she_bench.reasoning.verdicts import verdict

CEILING_OF = {"category_matching": "item-blind", "attribute_matching": "attribute-blind",
              "relevance_judgment": "attribute-blind"}
"""Which predictor sets each verdict's ceiling."""
WORD = re.compile(r"[a-z0-9]+")


def item_category(ex) -> str | None:
    """The item's category: the benchmark's structured fact, else a `category` field of the item."""
    return ex.facts.get("category") or ex.item.get("category") or None


def features(ex, blind: str) -> dict[str, float]:
    """What a blind predictor sees: query words, word pairs and the whole query; attribute-blind adds the
    item's category (alone, crossed with each query word and with the whole query) and whether the query
    names it (alone and crossed with each query word)."""
    words = WORD.findall(ex.query.lower())
    out = {f"q:{w}": 1.0 for w in words}
    out.update({f"q2:{a}_{b}": 1.0 for a, b in zip(words, words[1:])})
    out["q:<text>:" + " ".join(words)] = 1.0
    if blind == "attribute-blind":
        cat = item_category(ex) or "<unknown>"
        named = " ".join(WORD.findall(cat.lower())) in " ".join(words)  # the query names the item's category
        out[f"c:{cat}"] = 1.0
        out[f"named:{named}"] = 1.0
        out.update({f"x:{w}|{cat}": 1.0 for w in words})
        out.update({f"n:{w}|{named}": 1.0 for w in words})
        out["x:<text>:" + " ".join(words) + "|" + cat] = 1.0
    return out


def gold_verdict(ex, step: str, labels: list[str]) -> str | None:
    if step == "relevance_judgment":
        return ex.label
    return verdict(step, ex.steps.get(step), labels)


def _fit(train, step: str, blind: str, labels: list[str], seed: int = 0):
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    rows = [(features(ex, blind), v) for ex in train if (v := gold_verdict(ex, step, labels)) is not None]
    if not rows:
        return None, None
    vec = DictVectorizer()
    x = vec.fit_transform([f for f, _ in rows])
    y = [v for _, v in rows]
    if len(set(y)) == 1:
        return vec, y[0]
    model = LogisticRegression(C=1.0, max_iter=3000, random_state=seed)
    model.fit(x, y)
    return vec, model


def ceilings(train, examples, labels: list[str], slices: list[str] | None = None) -> dict:
    """{step: {"predictor", "constant_verdict", "n", "fitted", "constant", "ceiling", "slices": {slice: {"n",
    "fitted", "constant", "ceiling"}}}} on `examples` (pairs with a gold verdict only), from predictors fitted on
    `train`; "ceiling" is the better of "fitted" and "constant"."""
    out = {}
    for step, blind in CEILING_OF.items():
        vec, model = _fit(train, step, blind, labels)
        scored = [(ex, v) for ex in examples if (v := gold_verdict(ex, step, labels)) is not None]
        if vec is None or not scored:
            continue
        if isinstance(model, str):
            predicted = [model] * len(scored)
        else:
            predicted = list(model.predict(vec.transform([features(ex, blind) for ex, _ in scored])))
        counts = Counter(v for ex in train if (v := gold_verdict(ex, step, labels)) is not None)
        constant = max(sorted(counts), key=counts.get)

        def rates(idx):
            n = len(idx)
            if not n:
                return {"n": 0, "fitted": None, "constant": None, "ceiling": None}
            fitted = round(sum(predicted[i] == scored[i][1] for i in idx) / n, 4)
            const = round(sum(scored[i][1] == constant for i in idx) / n, 4)
            return {"n": n, "fitted": fitted, "constant": const, "ceiling": max(fitted, const)}

        everything = list(range(len(scored)))
        out[step] = {"predictor": blind, "constant_verdict": constant, **rates(everything),
                     "slices": {name: rates([i for i in everything if name in scored[i][0].slices])
                                for name in slices or () if any(name in ex.slices for ex, _ in scored)}}
    return out
