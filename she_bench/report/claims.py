"""Claim experiments: the endpoints they measure, the verdict rule, and each experiment's fixed analysis.

An experiment (benchmarks/experiments/*.yaml) is a suite with a claim, a knob swept over levels (a card option or
config key, one cell per level) and an `analysis` fixed before it runs: the primary endpoint, the variant and its
comparator, the predicted direction, the level the primary test is read at, and the controls. The verdict:

* supported: the primary test goes the predicted way, significant after Holm (across the experiments' primary
  tests), and the positive control was detected;
* contradicted: the opposite way, significant after Holm;
* inconclusive at this power: neither, with the minimum detectable difference stated;
* unable to see: the positive control was not detected (whatever the primary test says).

Endpoints are per-query (numerator, denominator) counts, so every one goes through the crossed seed x query
estimator (report/stats.contrast) as a ratio.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from she_bench.registry import Registry
from she_bench.report.stats import contrast, mdd, ratio

CONFUSION_METRICS = ("macro_f1", "good_f1")
"""Endpoints computed from per-query confusion counts (the rest are registered ratios)."""
VERDICTS = ("supported", "contradicted", "inconclusive at this power", "unable to see")
ALPHA = 0.05

# An endpoint maps a run (its directory's records) to {query_id: (numerator, denominator)} over a subset.
ENDPOINTS: Registry = Registry("claim endpoint")


def _records(run, subset: str) -> list[dict]:
    recs = run.predictions
    return recs if subset == "overall" else [p for p in recs if subset in (p.get("slices") or ())]


def _by_query(pairs) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = {}
    for qid, num, den in pairs:
        acc = out.setdefault(str(qid), [0.0, 0.0])
        acc[0] += num
        acc[1] += den
    return {q: (a, b) for q, (a, b) in out.items()}


def _checked(p: dict, steps=None) -> list[bool]:
    v = p.get("step_verdicts") or {}
    return [x for s, x in v.items() if x is not None and s != "relevance_judgment" and (steps is None or s in steps)]


@ENDPOINTS.register("wrong_reason_rate")
def wrong_reason_rate(run, subset: str = "overall"):
    """Among label-right outputs, the share with a wrong checked intermediate step (right for the wrong reason)."""
    return _by_query((p.get("query_id", p["id"]), float(not all(_checked(p))), 1.0)
                     for p in _records(run, subset) if p.get("pred") == p.get("gold"))


@ENDPOINTS.register("matching_step_accuracy")
def matching_step_accuracy(run, subset: str = "overall"):
    """Accuracy of the category- and attribute-matching steps over the outputs that write them."""
    steps = ("category_matching", "attribute_matching")
    return _by_query((p.get("query_id", p["id"]), float(sum(_checked(p, steps))), float(len(_checked(p, steps))))
                     for p in _records(run, subset))


@ENDPOINTS.register("accuracy")
def accuracy(run, subset: str = "overall"):
    return _by_query((p.get("query_id", p["id"]), float(p.get("pred") == p.get("gold")), 1.0)
                     for p in _records(run, subset))


@ENDPOINTS.register("chain_pass_at_k")
def chain_pass_at_k(run, subset: str = "overall"):
    """pass@k of the whole chain (eval.samples samples per pair; some sample has every checked step and the label
    right), from the run's sampled.jsonl."""
    path = Path(run.path) / "sampled.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: chain pass@k needs the run's sampled outputs (eval.samples > 0)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return _by_query((r["query_id"], float(r["chain_right"] > 0), 1.0) for r in rows
                     if subset == "overall" or subset in r.get("slices", ()))


def aligned(per_run: list[dict[str, tuple[float, float]]]) -> list[np.ndarray]:
    """Per-run (Q, 2) count arrays over the queries every run holds, in one order."""
    common = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    return [np.array([d[q] for q in common], dtype=np.float64).reshape(-1, 2) for d in per_run]


def effect(arms: list[tuple[float, list]], endpoint: str, subset: str = "overall", n_boot: int = 2000,
           seed: int = 0) -> dict:
    """The crossed estimate of sum_j c_j endpoint(arm_j); each arm a list of runs paired by seed."""
    if endpoint in CONFUSION_METRICS:  # label metrics of per-query confusion counts, as the report's tables use
        from she_bench.evaluation.metrics import _cm_scores
        from she_bench.report.aggregate import _confusions, _labels

        every = [r for _, runs in arms for r in runs]
        labels, good = _labels(every)
        arrays, _ = _confusions(every, subset, labels, good)
        score = lambda cm: _cm_scores(cm, len(labels), good)[endpoint]  # noqa: E731
    else:
        fn = ENDPOINTS.get(endpoint)
        arrays, score = aligned([fn(r, subset) for _, runs in arms for r in runs]), ratio
    out, i = [], 0
    for c, runs in arms:
        out.append((c, arrays[i:i + len(runs)]))
        i += len(runs)
    if not arrays or arrays[0].shape[0] == 0:
        raise ValueError(f"endpoint {endpoint}: no query scored by every run")
    return contrast(out, score, n_boot, seed)


def detectable(est: dict, seeds: int | None = None) -> float | None:
    """The minimum detectable difference (power 0.8, alpha 0.05) of a test like `est`, at its seed count."""
    if est.get("query_var") is None:
        return None
    seeds = seeds or est["n_seeds"]
    return mdd(est["seed_var"] or 0.0, est["query_var"], seeds, est["n_queries"])


def equivalent(est: dict, margin: float | None) -> bool | None:
    """A negative control passes when its whole interval lies inside +-margin (the MDD): equivalence shown, which
    a low-powered 'no significant difference' is not."""
    if margin is None or est.get("lo") is None:
        return None
    return -margin <= est["lo"] and est["hi"] <= margin


def detected(est: dict, direction: str, alpha: float = ALPHA) -> bool:
    """A positive control is detected when it moves the predicted way, significant at alpha (it is not in the Holm
    family: it tests the experiment, not a claim)."""
    p, d = est.get("p_value"), est.get("diff")
    return p is not None and d is not None and p < alpha and (d > 0 if direction == "higher" else d < 0)


def verdict(diff: float | None, p_holm: float | None, direction: str, control_detected: bool,
            alpha: float = ALPHA) -> str:
    """One of VERDICTS for a primary test (see the module docstring)."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be higher or lower, got {direction!r}")
    if not control_detected:
        return "unable to see"
    if diff is None or p_holm is None or p_holm >= alpha:
        return "inconclusive at this power"
    return "supported" if (diff > 0) == (direction == "higher") else "contradicted"


def aa_splits(per_seed_runs: list, endpoint: str, subset: str = "overall", n_boot: int = 2000) -> dict:
    """A/A: one recipe's 2m seeds in one cell, split every way into m against m (6 seeds: 10 splits, each pair of
    halves once); how many come out significant at ALPHA (about 5% expected)."""
    from itertools import combinations

    n = len(per_seed_runs)
    if n < 2 or n % 2:
        raise ValueError(f"A/A needs an even number (>= 2) of seeds, got {n}")
    idx = list(range(n))
    halves = [c for c in combinations(idx, n // 2) if 0 in c]  # each split once
    results = []
    for a in halves:
        b = [i for i in idx if i not in a]
        est = effect([(1.0, [per_seed_runs[i] for i in a]), (-1.0, [per_seed_runs[i] for i in b])], endpoint, subset,
                     n_boot)
        results.append({"a": list(a), "b": b, "diff": est["diff"], "p_value": est["p_value"]})
    sig = sum(r["p_value"] is not None and r["p_value"] < ALPHA for r in results)
    return {"splits": len(results), "significant": sig, "results": results}


@ENDPOINTS.register("entropy")
def entropy(run, subset: str = "overall"):
    """Mean per-token policy entropy of the test outputs (per pair, averaged)."""
    return _by_query((p.get("query_id", p["id"]), float(p["entropy"]), 1.0) for p in _records(run, subset)
                     if p.get("entropy") is not None)


def run_name(recipe: str, knob: dict | None, level) -> str:
    """The run name of a recipe at a knob level (ablate's cell name; the default level adds nothing)."""
    from she_bench.ablate import cell_name

    if knob is None or ("default" in knob and level == knob["default"]):
        return recipe
    return cell_name(recipe, {knob["key"]: level})


def analyse(experiment: dict, groups: dict[str, list], n_boot: int = 2000) -> dict:
    """An experiment's fixed analysis over its runs (`groups`: run name -> runs, seeds in order). Missing runs
    leave the affected test out (status 'missing'), never a verdict."""
    a, knob = experiment.get("analysis") or {}, experiment.get("knob")
    direction, endpoint, subset = a.get("direction", "higher"), a.get("endpoint", "accuracy"), a.get("subset", "overall")

    def runs(recipe, level):
        got = groups.get(run_name(recipe, knob, level), [])
        return sorted(got, key=lambda r: r.seed)

    def test(variant, versus, level, versus_level=None, ep=None) -> dict:
        ep = ep or endpoint
        va, vb = runs(variant, level), runs(versus, level if versus_level is None else versus_level)
        seeds = sorted({r.seed for r in va} & {r.seed for r in vb})
        if not seeds:
            return {"status": "missing", "variant": variant, "versus": versus, "level": level}
        pick = lambda rs: [r for r in rs if r.seed in seeds]  # noqa: E731
        est = effect([(1.0, pick(va)), (-1.0, pick(vb))], ep, subset, n_boot)
        return {"status": "ok", "variant": variant, "versus": versus, "level": level, "endpoint": ep,
                "seeds": seeds, **est, "mdd": detectable(est)}

    out: dict = {"name": experiment.get("name"), "claim": experiment.get("claim"), "endpoint": endpoint,
                 "subset": subset, "direction": direction}
    if "aa" in a:
        recipe = a["aa"]["variant"]
        have, want = runs(recipe, None), len(experiment.get("seeds") or [])
        if len(have) < max(2, want):
            out["aa_missing"] = f"{len(have)} of {want} seeds of {recipe}"
            return out
        out["aa"] = {ep: aa_splits(have, ep, subset, n_boot) for ep in a["aa"].get("endpoints", [endpoint])}
        return out
    prim = a["primary"]
    versus = prim["versus"] if isinstance(prim["versus"], list) else [prim["versus"]]
    parts = [test(prim["variant"], v, prim["level"]) for v in versus]
    if all(p["status"] == "ok" for p in parts):
        # intersection-union over the comparators: the smaller effect in the predicted direction, the larger p
        sign = 1 if direction == "higher" else -1
        worst = min(parts, key=lambda p: sign * p["diff"])
        out["primary"] = {**worst, "p_value": max(p["p_value"] for p in parts), "parts": parts}
    else:
        out["primary"] = {"status": "missing", "parts": parts}
    levels = (knob or {}).get("levels", [prim["level"]])
    out["levels"] = [{"level": lv, "parts": [test(prim["variant"], v, lv) for v in versus]} for lv in levels]
    pc = a.get("positive_control")
    if pc:
        t = test(pc["variant"], pc.get("versus", pc["variant"]), pc["level"], pc.get("versus_level"), pc.get("endpoint"))
        t["detected"] = t["status"] == "ok" and detected(t, pc.get("direction", direction))
        out["positive_control"] = t
    nc = a.get("negative_control")
    if nc:
        t = test(nc["variant"], nc["versus"], nc["level"])
        t["equivalent"] = equivalent(t, t.get("mdd")) if t["status"] == "ok" else None
        out["negative_control"] = t
    return out


def decide(results: list[dict]) -> list[dict]:
    """Holm across the experiments' primary tests, then each one's verdict."""
    from she_bench.report.stats import holm

    ps = [r.get("primary", {}).get("p_value") if r.get("primary", {}).get("status") == "ok" else None for r in results]
    for r, p in zip(results, holm(ps)):
        if "primary" not in r:
            continue
        r["primary"]["p_holm"] = p
        pc = r.get("positive_control")
        if r["primary"].get("status") != "ok" or (pc and pc.get("status") != "ok"):
            r["verdict"] = "missing runs"
            continue
        r["verdict"] = verdict(r["primary"]["diff"], p, r["direction"], bool(pc is None or pc["detected"]))
    return results


def _fmt(x, nd: int = 3) -> str:
    return "-" if x is None else f"{x:+.{nd}f}"


def summary_markdown(results: list[dict]) -> str:
    """The claims summary table (one row per experiment) with its controls."""
    lines = ["# Claims", "", "Each claim's primary test (variant - comparator, 95% interval over seeds x queries, Holm across "
             "the primary tests), its positive and negative controls and the verdict (report/claims.py).", "",
             "| experiment | endpoint | primary | effect [95% CI] | p (Holm) | MDD | positive control | negative control | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "aa_missing" in r:
            lines.append(f"| {r['name']} | A/A | - | missing | - | - | - | - | missing runs ({r['aa_missing']}) |")
            continue
        if "aa" in r:
            for ep, aa in r["aa"].items():
                lines.append(f"| {r['name']} | {ep} | A/A, {aa['splits']} splits | - | - | - | - | - | "
                             f"{aa['significant']} of {aa['splits']} significant |")
            continue
        p = r.get("primary", {})
        pc, nc = r.get("positive_control") or {}, r.get("negative_control") or {}
        versus = ", ".join(x["versus"] for x in p.get("parts", [])) or "-"
        eff = f"{_fmt(p.get('diff'))} [{_fmt(p.get('lo'))}, {_fmt(p.get('hi'))}]" if p.get("status") == "ok" else "missing"
        pcs = ("detected" if pc.get("detected") else "not detected") if pc.get("status") == "ok" else "missing"
        ncs = {True: "equivalent", False: "not shown equivalent", None: "missing"}[nc.get("equivalent")]
        ph = p.get("p_holm")
        lines.append(f"| {r['name']} | {r['endpoint']} ({r['subset']}) | {p.get('variant', '-')} vs {versus} | {eff} | "
                     f"{'-' if ph is None else f'{ph:.3g}'} | {_fmt(p.get('mdd'))} | {pcs} | {ncs} | "
                     f"{r.get('verdict', 'missing runs')} |")
    return "\n".join(lines) + "\n"


def build_claims(experiments: list[Path], run_dirs: list[Path], out: Path, n_boot: int = 2000) -> list[dict]:
    """Analyse every experiment file over the runs found under run_dirs; writes claims.json and summary.md."""
    import yaml

    from she_bench.report.collect import collect, find_run_dirs

    runs, _ = collect(find_run_dirs(run_dirs))
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(r.name, []).append(r)
    results = []
    for path in experiments:
        exp = yaml.safe_load(Path(path).read_text())
        results.append({**analyse(exp, groups, n_boot), "file": Path(path).name})
    decide(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=float) + "\n")
    (out / "summary.md").write_text(summary_markdown(results))
    return results
