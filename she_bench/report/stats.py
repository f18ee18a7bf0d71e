"""Statistics of a report: a difference between two variants over seeds *and* queries, Holm's
correction, and the minimum detectable difference.

The design is crossed: every seed of every variant is scored on the same test queries. For
variant A against variant B on a label metric m, seed pair s gives D_s = m(A_s) - m(B_s) and the
estimate is Delta = mean_s D_s. Its variance has a part that more seeds average out and a part
they cannot, because all seeds share the queries:

    Var(Delta) = seed part / S + shared query part

* A query bootstrap (queries resampled with replacement, one draw shared by every seed and both
  variants; `n_boot` resamples, vectorised over per-query confusion counts) gives, per draw b,
  D_s(b). With V = Var_b(mean_s D_s(b)) and v = mean_s Var_b(D_s(b)), the shared query part is
  (S V - v) / (S - 1), floored at 0 (with one seed: V).
* The seed part comes from the seeds themselves: s2 = the sample variance of D_s over seeds (it also
  holds the query noise that is not shared between seeds, which is why the shared part is all
  that is added to it).

    Var_hat = s2 / S + shared
    interval: Delta +- t(0.975, S - 1) sqrt(Var_hat);   p: two-sided t-test of Delta = 0 on S - 1 df

The reference has S - 1 degrees of freedom, the seeds being the unit of replication. With three
seeds that is t(0.975, 2) = 4.30: intervals are wide because three seeds support little. (A
Satterthwaite df that credits the well-estimated query part undercovers with three seeds:
0.89-0.94 in benchmarks/stats/coverage.py; S - 1 keeps coverage at or above 0.95 there.) With one
seed the interval is the query part alone, on Q - 1 df. Coverage is checked by simulation in
tests/test_stats.py.
A single variant's interval (no B) is the same estimator with D_s = m(A_s).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate
from scipy import stats as st

from she_bench.evaluation.metrics import _cm_scores, _query_draws

CHUNK = 2000
"""Bootstrap draws per matrix product (bounds memory on large test sets)."""


def _r(x, nd: int = 6):
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def _sig(x, digits: int = 12):
    """x to `digits` significant digits: stable bytes without losing a tiny variance (entropy's are ~1e-8)."""
    return None if x is None or not math.isfinite(x) else float(f"{float(x):.{digits}g}")


def crossed(cms_a: list[np.ndarray], cms_b: list[np.ndarray] | None, metric: str, K: int, good: np.ndarray,
            n_boot: int = 10_000, seed: int = 0) -> dict:
    """Delta, its 95% interval and p over seeds and queries, for a metric of confusion counts.

    `cms_a[s]` (and `cms_b[s]`, same seed) are per-query confusion counts, shape (Q, K * (K + 1)), with
    the queries in the same order in every array. Without `cms_b`, the estimate is the mean of A.
    Returns {"diff", "lo", "hi", "p_value", "se", "df", "seed_var", "query_var" (the shared part),
    "boot_var" (V: the query bootstrap's variance of the seed mean), "per_seed", "n_seeds", "n_queries", "n_boot"}.
    """
    if cms_b is not None and len(cms_b) != len(cms_a):
        raise ValueError("crossed: need the same number (>= 1) of seeds on both sides")
    arms = [(1.0, cms_a)] + ([(-1.0, cms_b)] if cms_b is not None else [])
    return contrast(arms, lambda cm: _cm_scores(cm, K, good)[metric], n_boot, seed)


def ratio(counts: np.ndarray) -> np.ndarray:
    """A ratio endpoint from summed (numerator, denominator) counts, shape (..., 2): NaN where nothing is counted
    (e.g. right-for-the-wrong-reason = label-right outputs with a wrong checked step / label-right outputs)."""
    num, den = counts[..., 0], counts[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def contrast(arms: list[tuple[float, list[np.ndarray]]], score, n_boot: int = 10_000, seed: int = 0) -> dict:
    """The crossed estimator of a linear contrast sum_j c_j m(arm_j) over seeds and queries.

    Each arm is (c_j, per-seed count arrays of shape (Q, C)), every arm scored on the same Q queries in the same
    order, seed s of every arm paired; `score` maps summed counts (..., C) to the metric (confusion counts to
    macro-F1, (num, den) pairs to a ratio). A difference of two variants is [(1, A), (-1, B)]; an effect's change
    across knob levels is [(1, A_hi), (-1, B_hi), (-1, A_lo), (1, B_lo)]. One query draw is shared by every arm.
    """
    S = len(arms[0][1]) if arms else 0
    if S == 0 or any(len(a) != S for _, a in arms):
        raise ValueError("crossed: need the same number (>= 1) of seeds on both sides")
    Q = arms[0][1][0].shape[0]
    if any(x.shape[0] != Q for _, a in arms for x in a):
        raise ValueError("crossed: every arm must be scored on the same queries")

    def value(summed: list[list[np.ndarray]]) -> np.ndarray:  # summed[j][s]: counts of arm j, seed s
        return np.stack([sum(c * np.asarray(score(summed[j][s]), dtype=np.float64) for j, (c, _) in enumerate(arms))
                         for s in range(S)])

    per_seed = value([[x.sum(0, keepdims=True) for x in a] for _, a in arms])[:, 0]
    boot = np.empty((S, 0))
    if n_boot > 0:
        draws = _query_draws(Q, n_boot, seed).astype(np.float64)
        chunks = [value([[d @ x for x in a] for _, a in arms])
                  for d in (draws[i:i + CHUNK] for i in range(0, n_boot, CHUNK))]
        boot = np.concatenate(chunks, axis=1)  # (S, n_boot)
    delta = float(per_seed.mean())
    out = {"diff": _r(delta), "per_seed": [_r(x) for x in per_seed], "n_seeds": S, "n_queries": Q, "n_boot": n_boot,
           "lo": None, "hi": None, "p_value": None, "se": None, "df": None, "seed_var": None, "query_var": None,
           "boot_var": None}
    if n_boot == 0 or not math.isfinite(delta):
        return out
    boot = boot[:, np.isfinite(boot).all(axis=0)]  # draws where a ratio had nothing to count
    if boot.shape[1] < 2:
        return out
    V = float(boot.mean(axis=0).var(ddof=1))
    if S > 1:
        v = float(boot.var(axis=1, ddof=1).mean())
        shared = max(0.0, (S * V - v) / (S - 1))
        seed_var = float(per_seed.var(ddof=1))
        a, b, df = seed_var / S, shared, float(S - 1)
    else:
        seed_var, shared, a, b, df = None, V, 0.0, V, float(max(Q - 1, 1))
    se = math.sqrt(a + b)
    out.update(se=_sig(se), df=_r(df, 3), seed_var=_sig(seed_var), query_var=_sig(shared), boot_var=_sig(V))
    if se > 0:
        half = float(st.t.ppf(0.975, df)) * se
        out.update(lo=_r(delta - half), hi=_r(delta + half), p_value=_r(float(2 * st.t.sf(abs(delta) / se, df)), 8))
    else:  # no spread at all: identical runs
        out.update(lo=_r(delta), hi=_r(delta), p_value=1.0 if delta == 0 else 0.0)
    return out


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order (None entries are left out of the family)."""
    idx = sorted((i for i, p in enumerate(p_values) if p is not None), key=lambda i: p_values[i])
    m, out, running = len(idx), [None] * len(p_values), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def tost_interval(est: dict, alpha: float = 0.05) -> tuple[float, float]:
    """The (1 - 2 alpha) interval of an estimate from `contrast` (diff, se, df): inside +-margin is equivalence by
    two one-sided tests at `alpha`."""
    half = float(st.t.ppf(1 - alpha, est["df"])) * est["se"]
    return est["diff"] - half, est["diff"] + half


def power_t(ncp: float, df: float, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test at noncentrality `ncp`: P(|T| > t_crit) for T = (Z + ncp) / sqrt(V / df),
    V ~ chi2(df). scipy's noncentral t gives it, except where it returns NaN (large noncentrality, few df, e.g.
    nct.cdf(-4.6, 2, 8)): there it is integrated over V, which agrees with scipy to 1e-11 where both are finite.
    Finite and monotone in ncp."""
    crit = float(st.t.ppf(1 - alpha / 2, df))
    fast = float(st.nct.sf(crit, df, ncp) + st.nct.cdf(-crit, df, ncp))
    if math.isfinite(fast):
        return fast

    def given(v: float) -> float:
        c = crit * math.sqrt(v / df)
        return (st.norm.sf(c - ncp) + st.norm.cdf(-c - ncp)) * st.chi2.pdf(v, df)

    lo, hi = st.chi2.ppf(1e-12, df), st.chi2.isf(1e-12, df)
    value, _ = integrate.quad(given, lo, hi, limit=200, points=[df], epsabs=1e-12, epsrel=1e-10)
    return float(min(1.0, max(0.0, value)))


def mdd(seed_var: float, query_var: float, seeds: int, n_queries: int, power: float = 0.8,
        alpha: float = 0.05) -> float:
    """Minimum detectable difference of the crossed test with `seeds` seed pairs: the true Delta that the
    two-sided test at `alpha` rejects with probability `power` (noncentral t on seeds - 1 df; one seed:
    n_queries - 1)."""
    se = math.sqrt(seed_var / seeds + query_var)
    df = float(seeds - 1 if seeds > 1 else max(n_queries - 1, 1))
    lo, hi = 0.0, 50.0
    for _ in range(40):  # bisection on the noncentrality (50 / 2**40: far below any reported digit)
        mid = (lo + hi) / 2
        pw = power_t(mid, df, alpha)
        if not math.isfinite(pw):
            raise ArithmeticError(f"power at noncentrality {mid} on {df} df is not finite")
        lo, hi = (mid, hi) if pw < power else (lo, mid)
    return hi * se


def seeds_to_detect(target: float, seed_var: float, query_var: float, n_queries: int,
                    max_seeds: int = 100) -> int | None:
    """Fewest seeds whose minimum detectable difference is at most `target` (None: more than max_seeds,
    or the shared query variance alone is too large: only more queries help)."""
    for s in range(2, max_seeds + 1):
        if mdd(seed_var, query_var, s, n_queries) <= target:
            return s
    return None
