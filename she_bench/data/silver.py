"""Silver reasoning steps: rule-based query understanding, category matching and attribute matching
for benchmarks whose humans annotated only the item and the label (ESCI).

The rules read the query and the product metadata and nothing else (never the label):

* **Query understanding**: what the query asks for, in the catalogue's own words. The product type
  is the longest category name of the train catalogue whose words all occur in the query (else the
  last content word before "with", "without", "for", ...); the brand is a train-catalogue brand whose
  words occur in the query; the colour is a colour word the train catalogue's colour field uses;
  other attributes are sizes and quantities (words with digits), the audience (men, women, kids, ...)
  and what the query excludes ("without wheels", "not clear").
  ``type=desk chair; color=white; excludes=wheels``
* **Category matching**: the item's category path against the query's product type: ``same`` (the
  type's words all occur in the last two path elements), ``related`` (all in the path, or at least
  half of them in the path or title), ``different``, or ``unknown`` (no type or no category).
* **Attribute matching**: each asked attribute against the item's facts and text:
  ``brand=match; color=mismatch; excludes wheels=violated`` (``none`` when nothing is asked,
  ``unknown`` where the item does not say).

Silver steps are marked as such in the card (`silver_steps`) and kept apart from the human steps
(`Example.silver`): the warm start learns them, the offline verifier never checks them.
"""
from __future__ import annotations

import re
from collections import Counter

from she_bench.data.schema import Example

SILVER_STEPS = ("query_understanding", "category_matching", "attribute_matching")
COLOURS = {
    "black", "white", "red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "grey", "gray", "silver",
    "gold", "beige", "navy", "teal", "ivory", "cream", "tan", "khaki", "maroon", "burgundy", "turquoise", "clear",
    "multicolor", "rose", "bronze", "copper", "charcoal", "olive", "coral", "mint", "lavender", "violet", "natural",
}
AUDIENCE = {"men": "men", "mens": "men", "man": "men", "women": "women", "womens": "women", "woman": "women",
            "ladies": "women", "boys": "boys", "boy": "boys", "girls": "girls", "girl": "girls", "kids": "kids",
            "kid": "kids", "baby": "baby", "toddler": "toddler", "adult": "adult", "adults": "adult"}
NEGATIONS = {"without", "no", "not", "non", "except", "excluding"}
BREAKS = NEGATIONS | {"with", "for", "in", "on", "of", "and", "or", "to", "by", "from", "that", "under", "over"}
STOP = {"a", "an", "the", "&", "set", "pack", "inch", "size", "oz", "ounce", "ml", "lb", "lbs", "cm", "mm", "ft",
        "count", "gallon", "pint", "piece", "pcs", "plus"}
WORD = re.compile(r"[a-z0-9]+(?:[-'/.][a-z0-9]+)*")


def words(text: str) -> list[str]:
    return WORD.findall(str(text).lower().replace("’", "'"))


def stem(w: str) -> str:
    """A crude singular: chairs -> chair, glasses -> glass, batteries -> battery."""
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def stems(text: str) -> list[str]:
    return [stem(w) for w in words(text) if w not in STOP]


class Catalogue:
    """The vocabulary the rules match against, from the products of the train split."""

    def __init__(self, examples: list[Example]):
        categories, brands, colours = set(), set(), Counter()
        for ex in examples:
            for part in (ex.item.get("category") or "").split(" > "):
                s = tuple(w for w in stems(part) if w not in AUDIENCE and w not in COLOURS)
                if s and len(s) <= 4:
                    categories.add(s)
            b = tuple(words(ex.facts.get("brand", "")))
            if b and len(" ".join(b)) >= 3:
                brands.add(b)
            colours.update(w for w in words(ex.facts.get("color", "")) if w in COLOURS)
        self.categories = sorted(categories, key=lambda c: (-len(c), c))
        self.category_words = {w for c in categories for w in c}
        self.brands = sorted(brands, key=lambda b: (-len(b), b))
        self.colours = set(colours)


def _contains(seq: list[str], part: tuple[str, ...]) -> bool:
    n = len(part)
    return any(tuple(seq[i:i + n]) == part for i in range(len(seq) - n + 1))


def understand_query(query: str, cat: Catalogue) -> dict[str, str]:
    """The attributes a query asks for (see the module docstring), in a fixed key order."""
    raw = words(query)
    out: dict[str, str] = {}
    excluded, i = [], 0
    while i < len(raw):
        if raw[i] in NEGATIONS and i + 1 < len(raw):
            j = i + 1
            while j < len(raw) and raw[j] not in BREAKS and j - i <= 2:
                j += 1
            excluded.append(" ".join(raw[i + 1:j]))
            i = j
        else:
            i += 1
    asked = [w for w in raw if w not in NEGATIONS]
    # the words after a negation describe what is excluded, not the product
    kept, skip = [], 0
    for w in raw:
        if w in NEGATIONS:
            skip = 2
            continue
        if skip and w not in BREAKS:
            skip -= 1
            continue
        skip = 0
        kept.append(w)
    kept_stems = [stem(w) for w in kept if w not in STOP]
    brand = next((b for b in cat.brands if _contains(asked, b)), None)
    brand_words = set(brand or ())
    # the product type: the longest catalogue category in the words before the first "with", "for", ...;
    # among equally long ones, the one nearest the end of that phrase (English puts the head noun last)
    phrase = []
    for w in kept:
        if w in BREAKS and phrase:
            break
        if w not in STOP:
            phrase.append(stem(w))
    candidates = [c for c in cat.categories if set(c) <= set(phrase) and not set(c) <= brand_words]
    ptype = max(candidates, key=lambda c: (len(c), max(i for i, w in enumerate(phrase) if w in c)), default=None)
    if ptype is None:
        candidates = [c for c in cat.categories if set(c) <= set(kept_stems) and not set(c) <= brand_words]
        ptype = candidates[0] if candidates else None
    if ptype is None:
        content = [w for w in kept if w not in STOP and w not in brand_words and w not in COLOURS
                   and w not in AUDIENCE and not any(ch.isdigit() for ch in w)]
        head = []
        for w in kept:
            if w in BREAKS and head:
                break
            if w in content:
                head.append(stem(w))
        known = [w for w in head if w in cat.category_words]  # a word the catalogue's categories use
        ptype = tuple((known or head)[-1:]) or None
    if ptype:
        out["type"] = " ".join(ptype)
    if brand:
        out["brand"] = " ".join(brand)
    colour = next((w for w in kept if w in cat.colours or w in COLOURS), None)
    if colour:
        out["color"] = colour
    audience = next((AUDIENCE[w] for w in kept if w in AUDIENCE), None)
    if audience:
        out["for"] = audience
    sizes = [w for w in kept if any(ch.isdigit() for ch in w)]
    if sizes:
        out["size"] = " ".join(sizes[:2])
    if excluded:
        out["excludes"] = ", ".join(e for e in excluded if e) or "?"
    return out


def _text(pairs: dict[str, str], empty: str) -> str:
    return "; ".join(f"{k}={v}" for k, v in pairs.items()) or empty


def match_category(asked: dict[str, str], ex: Example) -> str:
    path = [stems(p) for p in (ex.item.get("category") or "").split(" > ") if p.strip()]
    if "type" not in asked or not path:
        return "unknown"
    t = set(asked["type"].split())
    leaf = {w for part in path[-2:] for w in part}
    everything = {w for part in path for w in part}
    if t <= leaf:
        return "same"
    title = set(stems(ex.item.get("title", "")))
    if t <= everything or len(t & (everything | title)) * 2 >= len(t):
        return "related"
    return "different"


def match_attributes(asked: dict[str, str], ex: Example) -> str:
    item_words = set(stems(" ".join(str(ex.item.get(k, "")) for k in ("title", "bullet_points", "description"))))
    out = {}
    if "brand" in asked:
        b = ex.facts.get("brand")
        out["brand"] = "unknown" if not b else "match" if set(words(b)) == set(asked["brand"].split()) or \
            asked["brand"] in b else "mismatch"
    if "color" in asked:
        c = ex.facts.get("color")
        c_words = set(words(c or "")) | (item_words if not c else set())
        out["color"] = ("match" if asked["color"] in c_words else "mismatch" if c else "unknown")
    if "for" in asked:
        text = set(words(ex.item.get("title", "") + " " + ex.item.get("category", "")))
        said = {AUDIENCE[w] for w in text if w in AUDIENCE}
        out["for"] = "unknown" if not said else "match" if asked["for"] in said else "mismatch"
    if "size" in asked:
        out["size"] = "match" if set(asked["size"].split()) <= set(words(ex.item.get("title", ""))) else "unknown"
    for excluded in asked.get("excludes", "").split(", "):
        if excluded and excluded != "?":
            out[f"excludes {excluded}"] = "violated" if set(stems(excluded)) <= item_words else "ok"
    return _text(out, "none")


def silver_steps(ex: Example, cat: Catalogue, asked: dict[str, str] | None = None) -> dict[str, str]:
    asked = understand_query(ex.query, cat) if asked is None else asked
    return {"query_understanding": _text(asked, "type=unknown"), "category_matching": match_category(asked, ex),
            "attribute_matching": match_attributes(asked, ex)}


def annotate(splits: dict[str, list[Example]], steps: list[str]) -> None:
    """Fill `Example.silver` with the `steps` (of SILVER_STEPS) the humans did not annotate, in place;
    the vocabulary comes from the train split's products."""
    cat = Catalogue(splits.get("train") or [ex for exs in splits.values() for ex in exs])
    queries: dict[str, dict[str, str]] = {}  # a query is read once, however many products it was judged on
    for exs in splits.values():
        for ex in exs:
            if ex.query not in queries:
                queries[ex.query] = understand_query(ex.query, cat)
            derived = silver_steps(ex, cat, queries[ex.query])
            ex.silver = {s: derived[s] for s in steps if s not in ex.steps}


def informative(step: str, text: str) -> bool:
    """Whether a silver step says something (coverage in the data card)."""
    return text not in ("unknown", "type=unknown", "")
