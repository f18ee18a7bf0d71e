"""Coverage and power of the report's seeds x queries estimator (she_bench/report/stats.py), by simulation.

    python benchmarks/stats/coverage.py [--reps 1000]

Synthetic accuracy data with a known difference, seed variance and per-query variance of the
size measured on toyshop (seed sd of a variant 0.01-0.05; 302 test queries of ~6.6 pairs). Prints,
per design, how often the 95% interval covers the true difference, how often the test rejects at
the true difference 0 (size) and at the minimum detectable difference (power, target 0.8), and,
beside it, the coverage of a query-only bootstrap interval (what the report used before).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from she_bench.report.stats import crossed, mdd  # noqa: E402
from tests.test_stats import GOOD, K, simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=2000)
    args = ap.parse_args()
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
