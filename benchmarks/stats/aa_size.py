"""The size of the claims' paired test under the suite's own variance structure (an A/A by simulation).

    python benchmarks/stats/aa_size.py [--evidence reports/claims/evidence.jsonl.xz] [--reps 400] [--boot 400] \
        [--out reports/aa-size.md]

A claim compares two RL rows that start from one warm start per seed. Under the null both are the warm start with a
few labels moved by RL, the same amount in expectation. This simulation takes, from the evidence, each seed's real
warm-start predictions (its queries, its right and wrong pairs: the query part as measured) and, from each RL row of
that build, the share of labels it moved off them and how often a moved label ended right (the run-to-run part as
measured); it draws two rows per seed, each moved as a measured RL row chosen at random, and runs the claims' test
(report/stats.contrast, accuracy) on them.
The share of replicates with p < 0.05 is the test's size, printed with its 95% Clopper-Pearson interval, for 3 and
for 6 seeds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from she_bench.report import evidence as evidence_file  # noqa: E402
from she_bench.report.claims import _aligned, accuracy  # noqa: E402
from she_bench.report.stats import contrast, ratio  # noqa: E402


def base_rows(ev: dict) -> list:
    """Per seed, the warm-start row of the default card (the A/A's grpo rows' warm start), in seed order."""
    rows = {e.config["seed"]: e for e in ev.values() if e.config.get("method") == "none" and not e.config.get("card")}
    return [rows[s] for s in sorted(rows)]


def movement(ev: dict, bases: list) -> list[tuple[float, float]]:
    """Per RL row of a base's build (the default card's grpo and srpo rows), the share of test labels it moves off its
    warm start and the share of moved labels that end right: the run-to-run variation as measured."""
    out = []
    for base in bases:
        ref = {p["id"]: p for p in base.predictions}
        for e in ev.values():
            if e.config.get("method") in ("grpo", "srpo") and not e.config.get("card") and \
                    e.config["seed"] == base.config["seed"] and (e.build or {}).get("id") == (base.build or {}).get("id"):
                changed = [p for p in e.predictions if p["id"] in ref and p["pred"] != ref[p["id"]]["pred"]]
                out.append((len(changed) / len(e.predictions),
                            float(np.mean([p["pred"] == p["gold"] for p in changed])) if changed else 0.0))
    if not out:
        raise SystemExit("no RL row shares a build with a warm-start row in the evidence")
    return out


def counts(base, moves: list[tuple[float, float]], rng) -> dict:
    """A simulated RL row: the base's predictions moved as one measured RL row (drawn at random) moved its own."""
    share, p_right = moves[rng.integers(len(moves))]
    preds = []
    for p in base.predictions:
        if rng.random() < share:
            right = rng.random() < p_right
            p = {**p, "pred": p["gold"] if right else ("__other__" if p["pred"] == p["gold"] else p["pred"])}
        preds.append(p)
    return accuracy(type("Run", (), {"predictions": preds})())


def size(bases: list, moves: list, reps: int, boot: int, seed: int = 0) -> dict:
    """The share of A/A replicates (two simulated RL rows per base, one process) whose paired test has p < 0.05."""
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(reps):
        arrays = _aligned([counts(b, moves, rng) for b in bases for _ in (0, 1)])
        est = contrast([(1.0, arrays[0::2]), (-1.0, arrays[1::2])], ratio, boot, i)
        hits += est["p_value"] is not None and est["p_value"] < 0.05
    ci = binomtest(hits, reps).proportion_ci(0.95, method="exact")
    return {"seeds": len(bases), "reps": reps, "rejections": hits, "size": hits / reps, "lo": ci.low, "hi": ci.high}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evidence", default="reports/claims/evidence.jsonl.xz")
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--boot", type=int, default=400)
    ap.add_argument("--out", help="also write the table, with what it is, to this Markdown file")
    args = ap.parse_args()
    ev = evidence_file.load(Path(args.evidence))
    bases = base_rows(ev)
    moves = movement(ev, bases)
    lines = [f"Bases: the default card's warm-start rows of seeds {[b.config['seed'] for b in bases]} (6 seeds reuse "
             f"them twice); {len(moves)} RL rows of their builds move {min(m for m, _ in moves):.4f}-"
             f"{max(m for m, _ in moves):.4f} of labels, {min(r for _, r in moves):.3f}-{max(r for _, r in moves):.3f} "
             f"of the moved end right (from {args.evidence}).", "",
             "| seeds | replicates | p < 0.05 | size [95% CI] |", "|---:|---:|---:|---|"]
    for n in (3, 6):
        r = size([bases[i % len(bases)] for i in range(n)], moves, args.reps, args.boot)
        lines.append(f"| {n} | {r['reps']} | {r['rejections']} | {r['size']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        command = " ".join(["python benchmarks/stats/aa_size.py", "--evidence", args.evidence, "--reps",
                            str(args.reps), "--boot", str(args.boot), "--out", args.out])
        Path(args.out).write_text("# The paired test's size in a simulated A/A\n\n" + __doc__.split("\n\n", 2)[2].strip()
                                  + f"\n\nMade by `{command}`.\n\n" + text)

if __name__ == "__main__":
    main()
