"""A data card for a loaded benchmark: counts per split, label and slice."""
from __future__ import annotations

from collections import Counter

from she_bench.data.cards import Benchmark


def describe(bench: Benchmark) -> dict:
    from she_bench.data.silver import informative

    out = {"benchmark": bench.name, "labels": bench.labels, "annotated_steps": bench.card.annotated_steps,
           "silver_steps": bench.card.silver_steps, "splits": {}}
    everything = [ex for exs in bench.splits.values() for ex in exs]
    for name, exs in [*bench.splits.items(), ("all", everything)]:
        out["splits"][name] = {
            "pairs": len(exs),
            "queries": len({ex.query_id for ex in exs}),
            "labels": {lab: n for lab, n in Counter(ex.label for ex in exs).most_common()},
            "query_types": dict(sorted(Counter(ex.query_type for ex in exs).items())),
            "query_types_by_query": dict(sorted(Counter({ex.query_id: ex.query_type for ex in exs}.values()).items())),
            "slices": dict(sorted(Counter(s for ex in exs for s in ex.slices).items())),
        }
        if name == "train":
            by_slice = Counter(s for ex in exs if ex.rationale for s in ex.slices)
            out["splits"][name]["rationales"] = {
                "pairs": sum(ex.rationale for ex in exs), "share": bench.card.rationale_share,
                "from_slices": bench.card.rationale_slices, "by_slice": dict(sorted(by_slice.items()))}
            noisy = [ex for ex in exs if ex.teacher]
            if bench.card.teacher_noise:  # which released rationales were corrupted, how, and in which steps
                out["splits"][name]["teacher_noise"] = {
                    "pairs": len(noisy), "share": bench.card.teacher_noise,
                    "how": dict(sorted(Counter(ex.noise for ex in noisy).items())),
                    "steps": dict(sorted(Counter(s for ex in noisy for s in ex.teacher).items()))}
            if bench.card.annotation_share < 1:
                out["splits"][name]["annotation"] = {"pairs": sum(ex.annotated for ex in exs),
                                                     "share": bench.card.annotation_share}
        if bench.card.silver_steps and exs:  # share of pairs whose silver step says something
            out["splits"][name]["silver_coverage"] = {
                step: round(sum(informative(step, ex.silver.get(step, "")) for ex in exs) / len(exs), 4)
                for step in bench.card.silver_steps}
    train = bench.splits.get("train", [])
    train_queries = {ex.query for ex in train}
    train_pairs = {(ex.query, _item_key(ex)) for ex in train}
    for name, exs in bench.splits.items():
        if name == "train" or not exs:
            continue
        queries = {ex.query for ex in exs}
        out["splits"][name]["overlap_with_train"] = {
            "pairs_identical": sum((ex.query, _item_key(ex)) in train_pairs for ex in exs),
            "query_strings_seen": len(queries & train_queries),
            "query_strings": len(queries),
            "pairs_with_seen_query_share": round(sum(ex.query in train_queries for ex in exs) / len(exs), 4),
        }
    return out


def format_ceilings(ceilings: dict) -> str:
    """The verdict ceilings of each evaluated split (evaluation/ceilings.py) as lines of a data card."""
    lines = ["", "## verdict ceilings (fitted on train; a policy at its ceiling may be guessing)"]
    for split, steps in ceilings.items():
        for step, c in steps.items():
            sl = ", ".join(f"{k} {v['ceiling']:.3f}" for k, v in c["slices"].items() if v["ceiling"] is not None)
            lines.append(f"  {split:5s} {step:20s} {c['predictor']:16s} {c['ceiling']:.3f} over {c['n']:,} pairs "
                         f"(fitted {c['fitted']:.3f}, constant '{c['constant_verdict']}' {c['constant']:.3f})"
                         f"{'; ' + sl if sl else ''}")
    return "\n".join(lines)


def _item_key(ex) -> str:
    return ex.item.get("title") or repr(sorted(ex.item.items()))


def format_card(card: dict) -> str:
    lines = [f"# {card['benchmark']}", f"labels: {', '.join(card['labels'])}",
             f"annotated steps: {', '.join(card['annotated_steps']) or 'none'}",
             f"silver steps (rule-derived, never verified): {', '.join(card.get('silver_steps') or []) or 'none'}", ""]
    for name, s in card["splits"].items():
        lines.append(f"## {name}: {s['pairs']:,} pairs, {s['queries']:,} queries")
        lines.append("  labels:      " + ", ".join(f"{k} {v:,}" for k, v in s["labels"].items()))
        lines.append("  query types: " + ", ".join(f"{k} {v:,}" for k, v in s["query_types_by_query"].items())
                     + " (queries)")
        lines.append("  slices:      " + ", ".join(f"{k} {v:,}" for k, v in s["slices"].items()) + " (pairs)")
        if "rationales" in s:
            r = s["rationales"]
            lines.append(f"  rationales:  {r['pairs']:,} of {s['pairs']:,} pairs may be SFT targets (rationale_share "
                         f"{r['share']:g}"
                         + (f", from slices {', '.join(r['from_slices'])}" if r["from_slices"] else "")
                         + "): " + ", ".join(f"{k} {v:,}" for k, v in r["by_slice"].items()))
        if "teacher_noise" in s:
            t = s["teacher_noise"]
            lines.append(f"  teacher:     {t['pairs']:,} released rationales corrupted, label kept (teacher_noise "
                         f"{t['share']:g}): " + ", ".join(f"{k} {v:,}" for k, v in t["how"].items())
                         + "; steps changed: " + ", ".join(f"{k} {v:,}" for k, v in t["steps"].items()))
        if "annotation" in s:
            a = s["annotation"]
            lines.append(f"  annotated:   the verifier knows the steps of {a['pairs']:,} of {s['pairs']:,} pairs "
                         f"(annotation_share {a['share']:g}; the label of every pair)")
        if "silver_coverage" in s:
            lines.append("  silver:      " + ", ".join(f"{k} {v:.1%}" for k, v in s["silver_coverage"].items())
                         + " of pairs informative")
        if "overlap_with_train" in s:
            o = s["overlap_with_train"]
            lines.append(f"  vs train:    {o['pairs_identical']:,} identical (query, item) pairs; "
                         f"{o['query_strings_seen']:,} of {o['query_strings']:,} query strings seen in train "
                         f"({o['pairs_with_seen_query_share']:.1%} of pairs)")
    return "\n".join(lines)
