"""Print a seeded sample of esci-us-150's silver rationales as Markdown, for a reader to judge.

    python benchmarks/esci_silver_sample.py [--n 30] [--seed 0]

(the table in benchmarks/esci-us-150.md is this script's output).
"""
from __future__ import annotations

import argparse
import random

from she_bench.data.cards import load_benchmark
from she_bench.data.silver import SILVER_STEPS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bench = load_benchmark("esci-us-150")
    sample = random.Random(args.seed).sample(bench.splits["train"], args.n)
    print("| # | query | product (title; category leaf) | label | query understanding | category | attributes |")
    print("|---:|---|---|---|---|---|---|")
    for i, ex in enumerate(sample, 1):
        leaf = (ex.item.get("category") or "n/a").split(" > ")[-1]
        cells = [str(i), ex.query, f"{ex.item.get('title', '')[:60]}; {leaf}", ex.label,
                 *(ex.silver.get(s, "n/a") for s in SILVER_STEPS)]
        print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")


if __name__ == "__main__":
    main()
