"""toyshop: a generated shopping catalogue and query log where every reasoning step has exact gold.

Everything is drawn from `random.Random` seeded by the card's `seed`; nothing is cached.
The world below is fixed; the seed decides category popularity (a Zipf law over a seeded
order of the categories), which categories form the tail, which (category, query type)
pairs are held out of train/dev, and every query and item. See benchmarks/toyshop.md.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from she_bench.data.cards import CORRUPTERS, LOADERS, Card
from she_bench.data.schema import DataError, Example

# ---------------------------------------------------------------------------------------
# The world

#  category            group               allowed materials
CATALOGUE: list[tuple[str, str, tuple[str, ...]]] = [
    ("running shoes",    "footwear",         ("mesh", "nylon", "leather")),
    ("sneakers",         "footwear",         ("canvas", "leather", "mesh")),
    ("boots",            "footwear",         ("leather", "rubber", "wool")),
    ("sandals",          "footwear",         ("leather", "rubber")),
    ("headphones",       "audio",            ("plastic", "metal", "leather")),
    ("earbuds",          "audio",            ("plastic", "metal")),
    ("speaker",          "audio",            ("plastic", "metal", "wood")),
    ("mug",              "drinkware",        ("ceramic", "glass", "metal")),
    ("water bottle",     "drinkware",        ("plastic", "metal", "glass")),
    ("tumbler",          "drinkware",        ("metal", "glass", "plastic")),
    ("laptop",           "computing",        ("metal", "plastic")),
    ("tablet",           "computing",        ("metal", "plastic")),
    ("smartphone",       "mobile",           ("metal", "glass", "plastic")),
    ("frying pan",       "kitchen",          ("metal", "ceramic", "copper")),
    ("saucepan",         "kitchen",          ("metal", "ceramic", "copper")),
    ("t-shirt",          "tops",             ("cotton", "polyester")),
    ("hoodie",           "tops",             ("cotton", "wool", "polyester")),
    ("sweater",          "tops",             ("wool", "cotton")),
    ("backpack",         "bags",             ("nylon", "canvas", "leather")),
    ("tote bag",         "bags",             ("canvas", "cotton", "leather")),
    # accessories: each is its own group; what they go with is in COMPLEMENTS
    ("phone case",       "phone case",       ("silicone", "leather", "plastic")),
    ("screen protector", "screen protector", ("glass", "plastic")),
    ("laptop sleeve",    "laptop sleeve",    ("nylon", "leather", "wool")),
    ("charger",          "charger",          ("plastic", "metal")),
    ("shoe laces",       "shoe laces",       ("cotton", "nylon", "leather")),
    ("ear tips",         "ear tips",         ("silicone", "foam")),
    ("lid",              "lid",              ("glass", "metal", "silicone")),
]
# accessory -> the base categories it completes (symmetric when labelling)
COMPLEMENTS: dict[str, tuple[str, ...]] = {
    "phone case": ("smartphone",),
    "screen protector": ("smartphone", "tablet"),
    "laptop sleeve": ("laptop",),
    "charger": ("smartphone", "laptop", "tablet", "headphones", "speaker"),
    "shoe laces": ("sneakers", "running shoes", "boots"),
    "ear tips": ("earbuds",),
    "lid": ("saucepan", "frying pan", "tumbler"),
}
BRANDS = ("zento", "alvo", "kimra", "dovel", "pexa", "lumo", "varnix", "orsa")
COLORS = ("red", "blue", "black", "white", "green", "grey", "pink", "yellow")

CATEGORIES = [c for c, _, _ in CATALOGUE]
GROUP = {c: g for c, g, _ in CATALOGUE}
MATERIALS = {c: m for c, _, m in CATALOGUE}
PARTNERS: dict[str, set[str]] = {c: set() for c in CATEGORIES}
for _acc, _bases in COMPLEMENTS.items():
    for _b in _bases:
        PARTNERS[_acc].add(_b)
        PARTNERS[_b].add(_acc)
BASES = [c for c in CATEGORIES if c not in COMPLEMENTS and PARTNERS[c]]  # what "accessories for" can name

INTENTS = ("plain", "attribute", "brand", "negation", "substitute", "accessory")
TYPE_SHARES = {"plain": 0.35, "attribute": 0.30, "brand": 0.20, "negation": 0.05, "substitute": 0.05, "accessory": 0.05}
RARE_TYPES = ("negation", "substitute", "accessory")
LABELS = ("Exact", "Substitute", "Complement", "Irrelevant")
# Target label shares over the natural query mix (see calibrate_label_weights).
LABEL_TARGETS = {"Exact": 0.40, "Substitute": 0.30, "Complement": 0.12, "Irrelevant": 0.18}
QUERY_KEYS = ("intent", "category", "brand", "color", "material", "exclude")

DEFAULTS = {
    "seed": 0, "n_train": 20000, "n_dev": 1000, "n_test_head": 1000, "n_test_tail": 1000,
    "zipf_s": 1.0,          # popularity of the category at rank r is proportional to 1 / r**zipf_s
    "tail_mass": 0.15,      # tail categories: least popular ones holding at most this share
    "n_heldout": 10,        # (category, query type) pairs never seen in train/dev
    "unseen_share": 0.25,   # share of the test tail drawn from the held-out pairs
}


def relation(query_category: str, item_category: str) -> str:
    if item_category == query_category:
        return "same"
    if GROUP[item_category] == GROUP[query_category]:
        return "same group"
    if item_category in PARTNERS[query_category]:
        return "complement"
    return "unrelated"


def judge(intent: str, rel: str, results: list[tuple[str, str]]) -> str:
    """The label rules: from the category relation (step 3) and the checks' (key, verdict) (step 4)."""
    if intent == "accessory":
        return {"complement": "Exact", "same": "Complement"}.get(rel, "Irrelevant")
    if rel == "same":
        if intent == "substitute":
            return "Exact" if dict(results).get("brand") == "different" else "Substitute"
        return "Exact" if all(v in ("match", "ok") for _, v in results) else "Substitute"
    return {"same group": "Substitute", "complement": "Complement"}.get(rel, "Irrelevant")


# ---------------------------------------------------------------------------------------
# Queries and items

@dataclass(frozen=True)
class Query:
    intent: str
    category: str
    brand: str = ""
    color: str = ""
    material: str = ""
    exclude: str = ""

    @property
    def text(self) -> str:
        c = self.category
        return {
            "plain": c,
            "attribute": f"{self.color or self.material} {c}",
            "brand": f"{self.brand} {c}",
            "negation": f"{c} without {self.exclude}",
            "substitute": f"alternative to {self.brand} {c}",
            "accessory": f"accessories for {c}",
        }[self.intent]

    def fields(self) -> list[tuple[str, str]]:
        return [(k, getattr(self, k)) for k in QUERY_KEYS if getattr(self, k)]


@dataclass(frozen=True)
class Item:
    category: str
    brand: str
    color: str
    material: str

    @property
    def title(self) -> str:
        return f"{self.brand} {self.color} {self.material} {self.category}".title()


def checks(q: Query, item: Item) -> list[tuple[str, str, str, str]]:
    """Step 4: one check per constraint of the query, in QUERY_KEYS order, as
    (key, the query's value, the item's value, verdict)."""
    out = []
    if q.brand:
        same = item.brand == q.brand
        if q.intent == "substitute":
            out.append(("brand", q.brand, item.brand, "same" if same else "different"))
        else:
            out.append(("brand", q.brand, item.brand, "match" if same else "mismatch"))
    if q.color:
        out.append(("color", q.color, item.color, "match" if item.color == q.color else "mismatch"))
    if q.material:
        out.append(("material", q.material, item.material, "match" if item.material == q.material else "mismatch"))
    if q.exclude:
        out.append(("exclude", q.exclude, item.material, "violated" if item.material == q.exclude else "ok"))
    return out


def _kv(pairs: list[tuple[str, str]]) -> str:
    return "; ".join(f"{k}={v}" for k, v in pairs)


def compared(query_value: str, item_value: str, verdict: str) -> str:
    """A comparison step names what it compares before its verdict: 'green vs blue: mismatch'."""
    return f"{query_value} vs {item_value}: {verdict}"


@dataclass
class World:
    """What the seed decides about the world: popularity, tail categories, held-out pairs."""
    popularity: dict[str, float]
    tail: set[str]
    heldout: list[tuple[str, str]]  # (category, intent)
    label_weights: dict[str, float]
    heldout_set: set[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.heldout_set = set(self.heldout)

    def is_tail(self, q: Query) -> bool:
        return q.category in self.tail or q.intent in RARE_TYPES

    def is_heldout(self, q: Query) -> bool:
        return (q.category, q.intent) in self.heldout_set


def build_world(seed: int = 0, zipf_s: float = 1.0, tail_mass: float = 0.15, n_heldout: int = 10) -> World:
    rng = random.Random(f"toyshop:{seed}:world")
    order = CATEGORIES[:]
    rng.shuffle(order)
    raw = [1 / (r + 1) ** zipf_s for r in range(len(order))]
    popularity = {c: w / sum(raw) for c, w in zip(order, raw)}
    tail, mass = set(), 0.0
    for c in reversed(order):
        if mass + popularity[c] > tail_mass:
            break
        tail.add(c)
        mass += popularity[c]
    # Held-out pairs are tail by construction (tail category or rare type), so the test's
    # unseen_combo slice lies inside its tail. At most one pair per category and three per
    # type, so every held-out category and type is still well seen in train.
    candidates = sorted(
        (c, t) for t in INTENTS if t != "plain" for c in (BASES if t == "accessory" else CATEGORIES)
        if c in tail or t in RARE_TYPES
    )
    rng.shuffle(candidates)
    heldout: list[tuple[str, str]] = []
    for c, t in candidates:
        if len(heldout) == n_heldout:
            break
        if all(c != hc for hc, _ in heldout) and sum(t == ht for _, ht in heldout) < 3:
            heldout.append((c, t))
    return World(popularity=popularity, tail=tail, heldout=sorted(heldout),
                 label_weights=calibrate_label_weights(popularity))


def calibrate_label_weights(popularity: dict[str, float], iters: int = 30) -> dict[str, float]:
    """Label sampling weights that give LABEL_TARGETS under the natural query mix.

    Some queries cannot have some labels (no complement category, no Substitute for an
    accessory query, ...); those are dropped per query, so the other labels' weights are
    raised to make up for it. Computed exactly over (intent, category) cells.
    """
    cells = []
    for t in INTENTS:
        cats = BASES if t == "accessory" else CATEGORIES
        z = sum(popularity[c] for c in cats)
        cells += [(TYPE_SHARES[t] * popularity[c] / z, list(_plans(Query(t, c)))) for c in cats]
    w = dict(LABEL_TARGETS)
    for _ in range(iters):
        share = dict.fromkeys(LABELS, 0.0)
        for p, labels in cells:
            z = sum(w[lab] for lab in labels)
            for lab in labels:
                share[lab] += p * w[lab] / z
        w = {lab: w[lab] * LABEL_TARGETS[lab] / share[lab] for lab in LABELS}
    return w


def make_query(rng: random.Random, intent: str, category: str) -> Query:
    if intent == "attribute":
        if rng.random() < 0.6:
            return Query(intent, category, color=rng.choice(COLORS))
        return Query(intent, category, material=rng.choice(MATERIALS[category]))
    if intent in ("brand", "substitute"):
        return Query(intent, category, brand=rng.choice(BRANDS))
    if intent == "negation":
        return Query(intent, category, exclude=rng.choice(MATERIALS[category]))
    return Query(intent, category)


def natural_query(rng: random.Random, world: World) -> Query:
    intent = rng.choices(INTENTS, [TYPE_SHARES[t] for t in INTENTS])[0]
    cats = BASES if intent == "accessory" else CATEGORIES
    category = rng.choices(cats, [world.popularity[c] for c in cats])[0]
    return make_query(rng, intent, category)


def _plans(q: Query) -> dict[str, list[tuple[str, bool]]]:
    """label -> ways to get it: (relation, whether a same-category item meets the constraint)."""
    has_group = any(GROUP[c] == GROUP[q.category] and c != q.category for c in CATEGORIES)
    has_partner = bool(PARTNERS[q.category])
    if q.intent == "accessory":
        plans = {"Exact": [("complement", True)], "Complement": [("same", True)],
                 "Irrelevant": [("unrelated", True)] + ([("same group", True)] if has_group else [])}
    else:
        constrained = q.intent != "plain"
        plans = {"Exact": [("same", True)],
                 "Substitute": ([("same", False)] if constrained else [])
                 + ([("same group", True)] if has_group else []),
                 "Complement": [("complement", True)] if has_partner else [],
                 "Irrelevant": [("unrelated", True)]}
    return {k: v for k, v in plans.items() if v}


def _other(rng: random.Random, options: tuple[str, ...] | list[str], not_this: str) -> str:
    return rng.choice([o for o in options if o != not_this])


def draw_label(rng: random.Random, q: Query, label_weights: dict[str, float]) -> str:
    labels = list(_plans(q))
    return rng.choices(labels, [label_weights[lab] for lab in labels])[0]


def sample_item(rng: random.Random, q: Query, label: str) -> Item:
    """An item that makes `label` the gold label for `q`."""
    rel, meets = rng.choice(_plans(q)[label])
    qc = q.category
    if rel == "same":
        cat = qc
    else:
        pool = [c for c in CATEGORIES if relation(qc, c) == rel]
        cat = rng.choice(pool)
    brand, color, material = rng.choice(BRANDS), rng.choice(COLORS), rng.choice(MATERIALS[cat])
    if rel == "same":
        if q.intent == "substitute":
            brand = _other(rng, BRANDS, q.brand) if meets else q.brand
        elif q.brand:
            brand = q.brand if meets else _other(rng, BRANDS, q.brand)
        elif q.color:
            color = q.color if meets else _other(rng, COLORS, q.color)
        elif q.material:
            material = q.material if meets else _other(rng, MATERIALS[cat], q.material)
        elif q.exclude:
            material = _other(rng, MATERIALS[cat], q.exclude) if meets else q.exclude
    elif rng.random() < 0.5:
        # Other categories often share the query's constraint, so attributes alone never decide the label.
        brand = q.brand or brand
        color = q.color or color
        for m in (q.material, q.exclude):
            if m in MATERIALS[cat]:
                material = m
    return Item(cat, brand, color, material)


def make_example(ex_id: str, query_id: str, q: Query, item: Item, world: World) -> Example:
    rel = relation(q.category, item.category)
    chk = checks(q, item)
    label = judge(q.intent, rel, [(k, v) for k, _, _, v in chk])
    heldout = world.is_heldout(q)
    slices = ["tail" if world.is_tail(q) else "head", f"type:{q.intent}"] + (["unseen_combo"] if heldout else [])
    facts = {"category": item.category, "brand": item.brand, "color": item.color, "material": item.material}
    facts.update({f"query_{k}": v for k, v in q.fields()})
    steps = {
        "query_understanding": _kv(q.fields()),
        "item_understanding": _kv([("category", item.category), ("brand", item.brand),
                                   ("color", item.color), ("material", item.material)]),
        "category_matching": compared(q.category, item.category, rel),
        "attribute_matching": _kv([(k, compared(qv, iv, v)) for k, qv, iv, v in chk]) or "none",
        "relevance_judgment": label,
    }
    return Example(id=ex_id, query_id=query_id, query=q.text, item={"title": item.title}, label=label,
                   query_type=q.intent, steps=steps, facts=facts, slices=slices)


@CORRUPTERS.register("toyshop")
def corrupt(ex: Example, rng: random.Random) -> tuple[dict[str, str], str] | None:
    """A teacher's rationale for `ex` that is wrong in an intermediate step yet consistent, step by step, with
    itself and with the human label: either the item's category misread as one whose relation to the query gives
    the same label ("wrong category relation"), or one item value misread so that every check keeps its verdict
    ("misread <key>"). Returns (the changed steps, what was corrupted); None when neither is possible."""
    f = ex.facts
    q = Query(ex.query_type, f["query_category"], f.get("query_brand", ""), f.get("query_color", ""),
              f.get("query_material", ""), f.get("query_exclude", ""))
    item = Item(f["category"], f["brand"], f["color"], f["material"])
    rel = relation(q.category, item.category)
    results = [(k, v) for k, _, _, v in checks(q, item)]

    def steps_of(it: Item) -> dict[str, str]:
        chk = checks(q, it)
        out = {"item_understanding": _kv([("category", it.category), ("brand", it.brand), ("color", it.color),
                                          ("material", it.material)]),
               "category_matching": compared(q.category, it.category, relation(q.category, it.category)),
               "attribute_matching": _kv([(k, compared(qv, iv, v)) for k, qv, iv, v in chk]) or "none"}
        return {k: v for k, v in out.items() if v != ex.steps.get(k)}

    options: list[tuple[Item, str]] = []
    for c in CATEGORIES:  # a misread category: another relation, the same label, a material the category has
        r = relation(q.category, c)
        if r != rel and item.material in MATERIALS[c] and judge(q.intent, r, results) == ex.label:
            options.append((Item(c, item.brand, item.color, item.material), "wrong category relation"))
    by_kind: dict[str, list[tuple[Item, str]]] = {"category": options, "value": [], "unchecked": []}
    constrained = {"brand": q.brand, "color": q.color, "material": q.material or q.exclude}
    for key, values in (("brand", BRANDS), ("color", COLORS), ("material", MATERIALS[item.category])):
        for v in values:
            other = Item(**{**item.__dict__, key: v})
            if v != getattr(item, key) and [(k, x) for k, _, _, x in checks(q, other)] == results:
                by_kind["value" if constrained[key] else "unchecked"].append((other, f"misread {key}"))
    # a misread that a comparison step then uses (or a wrong relation) first; a misread of a value no check reads
    # (item understanding alone) only where the pair allows nothing else (an Exact plain query)
    kinds = [k for k in ("category", "value") if by_kind[k]] or [k for k in ("unchecked",) if by_kind[k]]
    if not kinds:
        return None
    other, what = rng.choice(by_kind[rng.choice(kinds)])
    return steps_of(other), what


class _SplitWriter:
    """Adds queries with 2-4 distinct items each to one split, up to a number of examples."""

    def __init__(self, name: str, world: World, rng: random.Random, exclude: frozenset = frozenset()):
        self.name, self.world, self.rng = name, world, rng
        self.exclude = exclude  # (query, title) pairs of another split that this one must not repeat
        self.owed: list[str] = []  # labels a query could not fill without repeating an excluded pair
        self.examples: list[Example] = []
        self.n_queries = 0

    def _label(self, q: Query) -> str:
        """The label an earlier query owes if `q` can carry it, else a fresh draw."""
        for i, label in enumerate(self.owed):
            if label in _plans(q):
                return self.owed.pop(i)
        return draw_label(self.rng, q, self.world.label_weights)

    def fill(self, n: int, next_query) -> None:
        target = len(self.examples) + n
        while len(self.examples) < target:
            q = next_query()
            qid = f"toyshop-{self.name}-q{self.n_queries:05d}"
            self.n_queries += 1
            titles: set[str] = set()
            for _ in range(min(self.rng.randint(2, 4), target - len(self.examples))):
                # Under an exclusion the label is kept across redraws, and one no fresh item could carry
                # passes to a later query: a frequent query's Exact items are the ones train holds most,
                # so a fresh label per redraw would shift the split's label shares.
                label = self._label(q) if self.exclude else None
                for _try in range(20):
                    item = sample_item(self.rng, q, label or draw_label(self.rng, q, self.world.label_weights))
                    if item.title not in titles and (q.text, item.title) not in self.exclude:
                        break
                else:
                    if label:
                        self.owed.append(label)
                    continue  # no fresh item for this query: fewer items rather than a repeated pair
                titles.add(item.title)
                self.examples.append(make_example(f"toyshop-{self.name}-{len(self.examples):05d}", qid, q, item,
                                                  self.world))


def generate(seed: int = 0, n_train: int = 20000, n_dev: int = 1000, n_test_head: int = 1000,
             n_test_tail: int = 1000, zipf_s: float = 1.0, tail_mass: float = 0.15,
             n_heldout: int = 10, unseen_share: float = 0.25) -> dict[str, list[Example]]:
    world = build_world(seed, zipf_s, tail_mass, n_heldout)

    def draw(rng: random.Random, accept) -> Query:
        while True:
            q = natural_query(rng, world)
            if accept(q):
                return q

    out = {}
    # Each split has its own stream, so changing one split's size leaves the others alone.
    # No dev or test (query, item) pair repeats a train pair: evaluation never scores a memorised pair.
    seen: frozenset = frozenset()
    for name, n in (("train", n_train), ("dev", n_dev)):
        rng = random.Random(f"toyshop:{seed}:{name}")
        w = _SplitWriter(name, world, rng, exclude=seen)
        w.fill(n, lambda: draw(rng, lambda q: not world.is_heldout(q)))
        out[name] = w.examples
        if name == "train":
            seen = frozenset((ex.query, ex.item["title"]) for ex in w.examples)
    rng = random.Random(f"toyshop:{seed}:test")
    w = _SplitWriter("test", world, rng, exclude=seen)
    w.fill(n_test_head, lambda: draw(rng, lambda q: not world.is_tail(q)))
    n_unseen = round(unseen_share * n_test_tail) if world.heldout else 0
    def unseen() -> Query:
        category, intent = rng.choice(world.heldout)
        return make_query(rng, intent, category)

    w.fill(n_unseen, unseen)
    w.fill(n_test_tail - n_unseen, lambda: draw(rng, lambda q: world.is_tail(q) and not world.is_heldout(q)))
    out["test"] = _interleave_queries(w.examples, rng)
    return out


def _interleave_queries(examples: list[Example], rng: random.Random) -> list[Example]:
    """Shuffle whole queries, so that the first N test examples (`--limit N`) mix head and tail."""
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.query_id, []).append(ex)
    order = list(groups)
    rng.shuffle(order)
    return [ex for q in order for ex in groups[q]]


@LOADERS.register("toyshop")
def load_toyshop(card: Card, data_dir: Path | None = None) -> dict[str, list[Example]]:
    source = str(card.path or "toyshop card")
    opts = dict(DEFAULTS)
    for k, v in (card.options or {}).items():
        if k not in DEFAULTS:
            raise DataError(source, None, f"options.{k}", f"unknown toyshop option (known: {sorted(DEFAULTS)})")
        kind = type(DEFAULTS[k])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            raise DataError(source, None, f"options.{k}", f"expected {kind.__name__}, got {v!r}")
        if v < 0 or (k in ("tail_mass", "unseen_share") and v > 1):
            raise DataError(source, None, f"options.{k}", f"out of range: {v!r}")
        opts[k] = v
    return generate(**opts)
