"""The rule-based silver annotator on hand-made products."""
from she_bench.data.schema import Example
from she_bench.data.silver import Catalogue, annotate, silver_steps, understand_query
from she_bench.reasoning.template import gold_rationale
from she_bench.rewards.verifier import verify_steps
from she_bench.reasoning.parser import parse


def product(pid, query, title, brand="", color="", category="", label="Exact"):
    facts = {k: v.lower() for k, v in (("brand", brand), ("color", color)) if v}
    item = {k: v for k, v in (("title", title), ("brand", brand), ("color", color), ("category", category)) if v}
    return Example(id=pid, query_id=query, query=query, item=item, label=label, facts=facts,
                   steps={"item_understanding": "brand=x", "relevance_judgment": label})


CHAIR = product("p1", "white desk chair without wheels", "Acme mesh office chair with wheels", "Acme", "White",
                "Home & Kitchen > Furniture > Home Office Chairs > Desk Chairs")
BOOTS = product("p2", "zento boots for women", "Zento leather boots", "Zento", "Red",
                "Clothing > Women > Shoes > Boots")
MUG = product("p3", "blue mug", "Ceramic mug", "Potter", "White", "Kitchen > Cups & Mugs", label="Substitute")
CATALOGUE = Catalogue([CHAIR, BOOTS, MUG])


def test_query_understanding_reads_type_brand_colour_audience_and_exclusions():
    assert understand_query("white desk chair without wheels", CATALOGUE) == {
        "type": "desk chair", "color": "white", "excludes": "wheels"}
    assert understand_query("zento boots for women", CATALOGUE) == {"type": "boot", "brand": "zento", "for": "women"}
    # "women" is a category of the catalogue but an audience, never a product type
    assert understand_query("womens mug 12 oz", CATALOGUE)["type"] == "mug"


def test_category_and_attribute_matching_against_the_item():
    chair = silver_steps(CHAIR, CATALOGUE)
    assert chair["category_matching"] == "same"
    assert chair["attribute_matching"] == "color=match; excludes wheels=violated"
    boots = silver_steps(BOOTS, CATALOGUE)
    assert boots == {"query_understanding": "type=boot; brand=zento; for=women", "category_matching": "same",
                     "attribute_matching": "brand=match; for=match"}
    mug_for_chair = silver_steps(product("p4", "white desk chair", "Ceramic mug", "Potter", "White",
                                         "Kitchen > Cups & Mugs"), CATALOGUE)
    assert mug_for_chair["category_matching"] == "different"
    assert silver_steps(MUG, CATALOGUE)["attribute_matching"] == "color=mismatch"
    no_category = product("p5", "blue mug", "Mug")
    assert silver_steps(no_category, CATALOGUE)["category_matching"] == "unknown"


def test_silver_steps_are_learned_but_never_verified():
    splits = {"train": [CHAIR, BOOTS, MUG]}
    annotate(splits, ["query_understanding", "category_matching", "attribute_matching"])
    assert set(CHAIR.silver) == {"query_understanding", "category_matching", "attribute_matching"}
    rationale = gold_rationale(CHAIR)
    assert "1. Query understanding: type=desk chair; color=white; excludes=wheels" in rationale
    assert "?" not in rationale
    verdicts = verify_steps(CHAIR, parse(rationale, ["Exact", "Substitute", "Complement", "Irrelevant"]),
                            ["Exact", "Substitute", "Complement", "Irrelevant"])
    assert verdicts["query_understanding"] is None and verdicts["category_matching"] is None
    assert verdicts["relevance_judgment"] is True
    assert CHAIR.to_dict()["silver"] == CHAIR.silver and "silver" not in product("p9", "q", "t").to_dict()
