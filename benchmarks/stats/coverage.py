"""Coverage and power of the report's seeds x queries estimator (she_bench/report/stats.py), by simulation.

    python benchmarks/stats/coverage.py [--reps 1000] [--designs confusion ratio interaction]

Synthetic accuracy data with a known difference, seed variance and per-query variance of the
size measured on toyshop (seed sd of a variant 0.01-0.05; 302 test queries of ~6.6 pairs). Prints,
per design, how often the 95% interval covers the true difference, how often the test rejects at
the true difference 0 (size) and at the minimum detectable difference (power, target 0.8), and,
beside it, the coverage of a query-only bootstrap interval (what the report used before).

The claim experiments' endpoints go through the same estimator (stats.contrast): `ratio` simulates a ratio endpoint
(right-for-the-wrong-reason: a per-query numerator over a random denominator, the label-right outputs, some queries
with none), `interaction` the change of a difference across two knob levels (four arms, one query draw).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from she_bench.report.stats import contrast, crossed, mdd, ratio  # noqa: E402
from tests.test_stats import GOOD, K, simulate  # noqa: E402


def ratio_arm(rng, shift, seeds, queries, q_rate, seed_sd):
    """Per-seed (Q, 2) counts of a ratio endpoint: denominators 0-4 per query (0: nothing to count there)."""
    runs = []
    for _ in range(seeds):
        den = rng.integers(0, 5, size=queries)
        p = np.clip(q_rate + shift + rng.normal(0, seed_sd), 0, 1)
        runs.append(np.stack([rng.binomial(den, p), den], axis=1).astype(float))
    return runs


def ratio_arms(rng, delta, seeds, queries, seed_sd, query_sd, interaction=False):
    """A - B on a ratio endpoint (true difference delta), or, with interaction, (A - B at level 1) - (A - B at
    level 0) (true change delta: the effect 0.05 at level 0 grows by delta)."""
    q_rate = np.clip(0.3 + rng.normal(0, query_sd, queries), 0, 1)
    if not interaction:
        return [(1.0, ratio_arm(rng, delta, seeds, queries, q_rate, seed_sd)),
                (-1.0, ratio_arm(rng, 0.0, seeds, queries, q_rate, seed_sd))]
    return [(1.0, ratio_arm(rng, 0.05 + delta, seeds, queries, q_rate, seed_sd)),
            (-1.0, ratio_arm(rng, 0.0, seeds, queries, q_rate, seed_sd)),
            (-1.0, ratio_arm(rng, 0.05, seeds, queries, q_rate, seed_sd)),
            (1.0, ratio_arm(rng, 0.0, seeds, queries, q_rate, seed_sd))]


def ratio_table(reps: int, boot: int, interaction: bool) -> None:
    name = "interaction (change of a ratio effect across two levels)" if interaction else "ratio endpoint"
    print(f"\n{name}\n")
    print("| seeds | seed sd | query sd | coverage | size (truth 0) | MDD | power at MDD |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for seeds, seed_sd, query_sd in ((3, 0.01, 0.1), (3, 0.03, 0.1), (5, 0.03, 0.1)):
        rng = np.random.default_rng(seeds * 1000 + int(seed_sd * 1000) + interaction)
        truth, cover, null, comps = 0.04, 0, [], []
        for i in range(reps):
            r = contrast(ratio_arms(rng, truth, seeds, 302, seed_sd, query_sd, interaction), ratio, boot, i)
            cover += r["lo"] <= truth <= r["hi"]
            z = contrast(ratio_arms(rng, 0.0, seeds, 302, seed_sd, query_sd, interaction), ratio, boot, i)
            null.append(z["p_value"] < 0.05)
            comps.append((z["seed_var"], z["query_var"]))
        sv, qv = np.mean([c[0] for c in comps]), np.mean([c[1] for c in comps])
        effect = mdd(sv, qv, seeds, 302)
        power = np.mean([contrast(ratio_arms(rng, effect, seeds, 302, seed_sd, query_sd, interaction), ratio, boot,
                                  i)["p_value"] < 0.05 for i in range(reps)])
        print(f"| {seeds} | {seed_sd} | {query_sd} | {cover / reps:.3f} | {np.mean(null):.3f} | {effect:.4f} | "
              f"{power:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--designs", nargs="+", default=["confusion", "ratio", "interaction"],
                    choices=["confusion", "ratio", "interaction"])
    args = ap.parse_args()
    if "ratio" in args.designs:
        ratio_table(args.reps, args.boot, interaction=False)
    if "interaction" in args.designs:
        ratio_table(args.reps, args.boot, interaction=True)
    if "confusion" not in args.designs:
        return
    print("\nconfusion-count metric (accuracy)\n")
    print("| seeds | seed sd | query sd | coverage | query-only coverage | size (truth 0) | MDD | power at MDD |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for seeds, seed_sd, query_sd in ((3, 0.01, 0.06), (3, 0.03, 0.06), (3, 0.05, 0.06), (5, 0.03, 0.06), (3, 0.0, 0.10)):
        rng = np.random.default_rng(seeds * 100 + int(seed_sd * 1000))
        truth = 0.03
        cover = qcover = 0
        null, comps = [], []
        for i in range(args.reps):
            r = crossed(*simulate(rng, truth, seeds, 302, 7, seed_sd, query_sd), "accuracy", K, GOOD, args.boot, i)
            cover += r["lo"] <= truth <= r["hi"]
            half = 1.96 * np.sqrt(r["boot_var"])  # a bootstrap over queries alone, seeds pooled
            qcover += r["diff"] - half <= truth <= r["diff"] + half
            z = crossed(*simulate(rng, 0.0, seeds, 302, 7, seed_sd, query_sd), "accuracy", K, GOOD, args.boot, i)
            null.append(z["p_value"] < 0.05)
            comps.append((z["seed_var"], z["query_var"]))
        sv, qv = np.mean([c[0] for c in comps]), np.mean([c[1] for c in comps])
        effect = mdd(sv, qv, seeds, 302)
        power = np.mean([crossed(*simulate(rng, effect, seeds, 302, 7, seed_sd, query_sd), "accuracy", K, GOOD,
                                 args.boot, i)["p_value"] < 0.05 for i in range(args.reps)])
        print(f"| {seeds} | {seed_sd} | {query_sd} | {cover / args.reps:.3f} | {qcover / args.reps:.3f} | "
              f"{np.mean(null):.3f} | {effect:.4f} | {power:.3f} |")


if __name__ == "__main__":
    main()
