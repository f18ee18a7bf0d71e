"""Policy entropy over training: the collapse indicator recorded in a run's metrics."""
from __future__ import annotations

COLLAPSE_RATIO = 0.5
"""Entropy is called collapsed when the last steps' mean falls below this share of the first steps'."""


def training_entropy(log: list[dict], window: int = 5) -> dict | None:
    """Token entropy of the policy at the start and end of the method's training (warm start and
    GRM training excluded), their ratio, and whether it collapsed."""
    values = [r["entropy"] for r in log if "entropy" in r and r.get("stage") not in ("warm_start", "grm")]
    if not values:
        return None
    first = sum(values[:window]) / len(values[:window])
    last = sum(values[-window:]) / len(values[-window:])
    ratio = last / first if first > 0 else None
    return {"initial": round(first, 4), "final": round(last, 4), "ratio": None if ratio is None else round(ratio, 4),
            "min": round(min(values), 4), "steps": len(values),
            "collapsed": ratio is not None and ratio < COLLAPSE_RATIO}
