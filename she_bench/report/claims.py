"""Claim experiments: their endpoints, their fixed analysis and the verdict rule.

An experiment (benchmarks/experiments/*.yaml) is a suite with a claim, a knob swept over levels (a card option or
config key, one cell per level) and an `analysis` fixed before it runs: the primary endpoint, the variant and its
comparator(s), the predicted direction, the level the primary test is read at, and the controls. Its runs are the
ones `she-bench ablate` makes of the same file (identified by path, config hash included, never by name alone).

Verdicts of a primary test (Holm across the experiments' primary tests; equivalence by TOST against the margin
the experiment declares, the 90% interval inside +-margin):

* supported: the predicted direction, significant after Holm, the positive control detected and the negative control
  equivalent to zero;
* contradicted: the opposite direction, significant after Holm, the same controls;
* negative control not equivalent: significant after Holm, but the negative control (a change that must show
  nothing) was not shown equivalent to zero, so the apparatus may be reporting differences that are not there;
* absent: not significant, the primary itself equivalent to zero within the margin, the positive control detected:
  the claimed effect is not there at a size that matters;
* inconclusive at this power: none of these, with the minimum detectable difference stated;
* unable to see: the positive control (a contrast of the primary's kind whose effect is known by construction) was not
  detected, whatever the primary test says.

A test whose runs are not all done (every declared seed on both sides, on one build) gets no verdict: "incomplete".
Two runs are compared only when they start from one build (the same warm-start weights, report/evidence.py): a seed
whose rows of one warm-start identity come from two builds is left out of the test and counted. An endpoint with
nothing to count (no output it applies to) is a positive control not detected, a primary test not significant.
Endpoints are per-query (numerator, denominator) counts or confusion counts, so each goes through the crossed
seed x query estimator (report/stats.contrast).
"""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from she_bench.config import ConfigError
from she_bench.registry import Registry
from she_bench.report.stats import contrast, holm, mdd, ratio, tost_interval

VERDICTS = ("supported", "contradicted", "negative control not equivalent", "absent", "inconclusive at this power",
            "unable to see")
INCOMPLETE = "incomplete"
ALPHA = 0.05
MAX_MARGIN = 0.03
"""An equivalence margin is at most min(MAX_MARGIN, half the predicted effect) on the endpoint's scale."""
BOOTSTRAP = 2000
"""Query resamples behind every claim interval and p-value (`she-bench claims --bootstrap` changes it; the pages say
which was used)."""
CONFUSION_METRICS = ("macro_f1", "good_f1")
"""Endpoints from per-query confusion counts (as the report's tables compute them); the rest are ratios."""

# An endpoint maps a run and a subset to {query_id: (numerator, denominator)}.
ENDPOINTS: Registry = Registry("claim endpoint")


def _records(run, subset: str) -> list[dict]:
    recs = run.predictions
    return recs if subset == "overall" else [p for p in recs if subset in (p.get("slices") or ())]


def _by_query(triples) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = {}
    for qid, num, den in triples:
        acc = out.setdefault(str(qid), [0.0, 0.0])
        acc[0] += num
        acc[1] += den
    return {q: (a, b) for q, (a, b) in out.items()}


def _checked(p: dict, steps=None) -> list[bool]:
    """Verdicts of the checked intermediate steps of one output (None = not checked)."""
    v = p.get("step_verdicts") or {}
    return [bool(x) for s, x in v.items()
            if x is not None and s != "relevance_judgment" and (steps is None or s in steps)]


@ENDPOINTS.register("accuracy")
def accuracy(run, subset: str = "overall"):
    """Share of greedy outputs with the gold label."""
    return _by_query((p["query_id"], float(p.get("pred") == p["gold"]), 1.0) for p in _records(run, subset))


@ENDPOINTS.register("wrong_reason_rate")
def wrong_reason_rate(run, subset: str = "overall"):
    """Among label-right outputs, the share with a wrong checked intermediate step: right for the wrong reason."""
    return _by_query((p["query_id"], float(not all(_checked(p))), 1.0)
                     for p in _records(run, subset) if p.get("pred") == p["gold"])


@ENDPOINTS.register("matching_step_accuracy")
def matching_step_accuracy(run, subset: str = "overall"):
    """Accuracy of the category- and attribute-matching steps, over every checked one."""
    steps = ("category_matching", "attribute_matching")
    return _by_query((p["query_id"], float(sum(_checked(p, steps))), float(len(_checked(p, steps))))
                     for p in _records(run, subset))


@ENDPOINTS.register("chain_pass_at_k")
def chain_pass_at_k(run, subset: str = "overall"):
    """pass@k of the whole chain: some one of the eval.samples samples of a pair is format-valid with the gold
    label and every checked step right (the run's sampled evaluation)."""
    if run.sampled is None:
        raise ValueError(f"{run.rel}: chain pass@k needs the run's sampled outputs (eval.samples > 0)")
    return _by_query((r["query_id"], float(r["chain_right"] > 0), 1.0) for r in run.sampled
                     if subset == "overall" or subset in (r.get("slices") or ()))


@ENDPOINTS.register("entropy")
def entropy(run, subset: str = "overall"):
    """Mean per-token policy entropy of the greedy test outputs (each pair weighs one)."""
    return _by_query((p["query_id"], float(p["entropy"]), 1.0) for p in _records(run, subset)
                     if p.get("entropy") is not None)


@ENDPOINTS.register("label_entropy")
def label_entropy(run, subset: str = "overall"):
    """Mean policy entropy at the final label's first token of the greedy test outputs (each output that writes a
    label weighs one; evaluation/decisions.py): where a collapse of the decision shows."""
    return _by_query((p["query_id"], float(p["decision_entropy"]["label"]), 1.0) for p in _records(run, subset)
                     if (p.get("decision_entropy") or {}).get("label") is not None)


def _aligned(per_run: list[dict[str, tuple[float, float]]]) -> list[np.ndarray]:
    """(Q, 2) count arrays over the queries any run counts, in one order; (0, 0) where a run counts nothing for a
    query (a ratio's denominator may be empty there, e.g. no label-right output), which adds nothing to its sums."""
    queries = sorted(set().union(*(set(d) for d in per_run)))
    return [np.array([d.get(q, (0.0, 0.0)) for q in queries], dtype=np.float64).reshape(-1, 2) for d in per_run]


def effect(arms: list[tuple[float, list]], endpoint: str, subset: str = "overall", n_boot: int = BOOTSTRAP,
           seed: int = 0) -> dict:
    """The crossed estimate of sum_j c_j endpoint(arm_j), each arm a list of runs paired by position (seed)."""
    every = [r for _, runs in arms for r in runs]
    if endpoint in CONFUSION_METRICS:
        from she_bench.evaluation.metrics import _cm_scores
        from she_bench.report.aggregate import _confusions, _labels

        labels, good = _labels(every)
        arrays, _ = _confusions(every, subset, labels, good)
        score = lambda cm: _cm_scores(cm, len(labels), good)[endpoint]  # noqa: E731
    else:
        arrays, score = _aligned([ENDPOINTS.get(endpoint)(r, subset) for r in every]), ratio
    if not arrays or arrays[0].shape[0] == 0:
        raise ValueError(f"endpoint {endpoint} ({subset}): no run has an output it counts")
    split, i = [], 0
    for c, runs in arms:
        split.append((c, arrays[i:i + len(runs)]))
        i += len(runs)
    return contrast(split, score, n_boot, seed)


def detectable(est: dict, alpha: float = ALPHA) -> float | None:
    """The minimum detectable difference (power 0.8, two-sided `alpha`) of a test like `est`."""
    if est.get("query_var") is None:
        return None
    return round(mdd(est["seed_var"] or 0.0, est["query_var"], est["n_seeds"], est["n_queries"], alpha=alpha), 6)


def equivalent(est: dict, margin: float | None, alpha: float = ALPHA) -> bool | None:
    """Equivalence to zero by two one-sided tests (TOST) at `alpha`: the (1 - 2 alpha) interval lies inside
    +-margin, a margin declared before the runs. None: no margin or no interval."""
    if margin is None or est.get("se") is None:
        return None
    lo, hi = tost_interval(est, alpha)
    return -margin < lo and hi < margin


def detected(est: dict, direction: str, alpha: float = ALPHA) -> bool:
    """A positive control is detected when it moves the predicted way, significant at alpha (it tests the
    experiment, not a claim, so it is outside the Holm family)."""
    p, d = est.get("p_value"), est.get("diff")
    return p is not None and d is not None and p < alpha and (d > 0 if direction == "higher" else d < 0)


def verdict(diff: float | None, p_holm: float | None, direction: str, control_detected: bool,
            negative_equivalent: bool | None = None, primary_equivalent: bool | None = None,
            alpha: float = ALPHA) -> str:
    """One of VERDICTS for a complete primary test (see the module docstring)."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be higher or lower, got {direction!r}")
    if not control_detected:
        return "unable to see"
    if diff is None or p_holm is None or p_holm >= alpha:
        return "absent" if primary_equivalent else "inconclusive at this power"
    if not negative_equivalent:
        return "negative control not equivalent"
    return "supported" if (diff > 0) == (direction == "higher") else "contradicted"


# --------------------------------------------------------------------------------------------------------------
# An experiment file and its runs

def _where(path, field: str, want: str, got) -> ConfigError:
    return ConfigError(f"{path}: field '{field}': expected {want}, got {got!r}")


def load_experiment(path: Path, profile: str | None = None) -> dict:
    """An experiment file (with its `profile` section laid over it), its analysis checked against its own rows and
    knob (one line naming the field)."""
    from she_bench.ablate import load_suite, read_suite

    jobs = load_suite(path, profile=profile)  # the suite part: recipes, knob, seeds
    exp = read_suite(path, profile)
    a = exp.get("analysis")
    if not isinstance(a, dict) or not a:
        raise _where(path, "analysis", "a mapping fixed before the runs", a)
    recipes = {j.recipe for j in jobs}
    if "aa" in a:
        aa = a["aa"]
        if not isinstance(aa, dict) or aa.get("variant") not in recipes:
            raise _where(path, "analysis.aa.variant", f"one of the rows ({', '.join(sorted(recipes))})", aa)
        if len(exp.get("seeds") or []) < 4 or len(exp["seeds"]) % 2:
            raise _where(path, "seeds", "an even number (>= 4) of seeds for an A/A split", exp.get("seeds"))
        for ep in aa.get("endpoints", [a.get("endpoint", "accuracy")]):
            _check_endpoint(path, "analysis.aa.endpoints", ep)
        return exp
    levels = (exp.get("knob") or {}).get("levels")
    if not levels:
        raise _where(path, "knob", "{key, levels, default} with at least one level", exp.get("knob"))
    if a.get("direction") not in ("higher", "lower"):
        raise _where(path, "analysis.direction", "higher or lower", a.get("direction"))
    pred = a.get("predicted_effect")
    if isinstance(pred, bool) or not isinstance(pred, (int, float)) or not pred > 0:
        raise _where(path, "analysis.predicted_effect",
                     "the effect's predicted size (> 0) on the endpoint's scale", pred)
    cap = min(MAX_MARGIN, pred / 2)
    for key, t in [("analysis.margin", a)] + [(f"analysis.{n}.margin", a.get(n)) for n in ("negative_control",)
                                              if isinstance(a.get(n), dict) and "margin" in a[n]]:
        m = t.get("margin")
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m <= cap + 1e-12:
            raise _where(path, key, f"an equivalence margin in (0, {cap:g}] (min({MAX_MARGIN}, half the predicted "
                                    "effect))", m)
    if not isinstance(a.get("margin_why"), str) or not a["margin_why"].strip():
        raise _where(path, "analysis.margin_why", "a sentence on why a difference of that size matters to a user",
                     a.get("margin_why"))
    _check_endpoint(path, "analysis.endpoint", a.get("endpoint"))
    for ep in a.get("secondary_endpoints", []):
        _check_endpoint(path, "analysis.secondary_endpoints", ep)
    for name in ("primary", "positive_control", "negative_control"):
        t = a.get(name)
        if not isinstance(t, dict):
            raise _where(path, f"analysis.{name}", "a mapping {variant, versus, level}", t)
        versus = t.get("versus", t.get("variant"))
        for row in [t.get("variant")] + (versus if isinstance(versus, list) else [versus]):
            if row not in recipes:
                raise _where(path, f"analysis.{name}",
                             f"rows among the experiment's ({', '.join(sorted(recipes))})", row)
        for key in ("level", "versus_level"):
            if key in t and t[key] not in levels:
                raise _where(path, f"analysis.{name}.{key}", f"one of the knob's levels {levels}", t[key])
        if "endpoint" in t:
            _check_endpoint(path, f"analysis.{name}.endpoint", t["endpoint"])
    for pair in a.get("secondary_rows", []):
        if not (isinstance(pair, list) and len(pair) == 2 and set(pair) <= recipes):
            raise _where(path, "analysis.secondary_rows", "[variant, versus] pairs of the experiment's rows", pair)
    return exp


def _check_endpoint(path, field: str, name) -> None:
    if name not in CONFUSION_METRICS and name not in ENDPOINTS:
        raise _where(path, field, f"an endpoint ({', '.join(sorted([*CONFUSION_METRICS, *ENDPOINTS.names()]))})", name)


def _key(level) -> str:
    return json.dumps(level, sort_keys=True)


class RunIndex:
    """The runs of experiment files under one output folder, each read once (experiments share runs) and through
    its evidence (report/evidence.py): a finished run folder's, else the line `evidence` holds for it.

    A folder replaces its line when both are of one build, or when the folders re-ran the line's whole cell (every
    line of its warm-start identity) on one build; a folder that would put a second build into a cell is reported
    (`refused`) and its line kept, so regenerating never mixes builds by accident."""

    def __init__(self, root: Path, profile: str | None = None, evidence: dict | None = None):
        self.root, self.profile = Path(root), profile
        self.evidence: dict = dict(evidence or {})
        """{rel: Evidence}: the lines given, with those of the run folders accepted replacing theirs."""
        self.from_folders: set[str] = set()
        self.refused: list[dict] = []
        """Folders not merged: {rel, folder_build, line_build, reason}."""
        self._scanned: set[str] = set()

    def scan(self, run_paths: list[Path]) -> None:
        """Read the finished folders among `run_paths` and merge them by the rule above."""
        from she_bench.config import warm_start_identity
        from she_bench.report.collect import RunData, read_run
        from she_bench.report.evidence import from_run

        found = {}
        for path in run_paths:
            rel = Path(path).relative_to(self.root).as_posix()
            if rel in self._scanned:
                continue
            self._scanned.add(rel)
            got = read_run(Path(path), rel) if Path(path).is_dir() else None
            if isinstance(got, RunData):
                found[rel] = from_run(got, rel)
        for rel, ev in sorted(found.items()):
            old = self.evidence.get(rel)
            if old is not None and (old.build or {}).get("inferred") and ev.build and reproduces(ev, old):
                self.resolve(old.build["id"], ev.build, rel)
        cells: dict[str, list[str]] = {}
        for rel, ev in self.evidence.items():
            cells.setdefault(warm_start_identity(ev.config), []).append(rel)
        for rel, ev in sorted(found.items()):
            old = self.evidence.get(rel)
            new_id = (ev.build or {}).get("id")
            if old is not None and (old.build or {}).get("id") != new_id:
                cell = cells.get(warm_start_identity(ev.config), [])
                whole = all(r in found and (found[r].build or {}).get("id") == new_id for r in cell)
                if not whole:
                    self.refused.append({"rel": rel, "folder_build": new_id, "line_build": (old.build or {}).get("id"),
                                         "reason": "the folder's build differs from its evidence line's, and the "
                                                   "folders do not re-run the line's whole cell on one build"})
                    continue
            self.evidence[rel] = ev
            self.from_folders.add(rel)

    def resolve(self, inferred_id: str, build: dict, by: str) -> None:
        """Give every line of an inferred build the real build a rebuild showed it to be: a run folder (`by`) rebuilt
        on this build reproduced, label for label, a line of that inferred build, so the rows linked to it started
        from the same weights. They keep `inferred` true and name the line that confirmed it (`linked_by`)."""
        for ev in self.evidence.values():
            if (ev.build or {}).get("id") == inferred_id:
                ev.build = {**build, "inferred": True, "linked_by": by, "inferred_id": inferred_id}

    def runs_of(self, path: Path, exp: dict) -> dict:
        """{(recipe, level key): {seed: Evidence or None (not done)}} for the file's jobs."""
        from she_bench.ablate import load_suite

        knob = exp.get("knob") or {}
        jobs = load_suite(path, str(self.root), self.profile)
        self.scan([job.run.path for job in jobs])
        out: dict = {}
        for job in jobs:
            level = job.overrides.get(knob["key"], knob.get("default")) if knob else None
            rel = job.run.path.relative_to(self.root).as_posix()
            out.setdefault((job.recipe, _key(level)), {})[job.seed] = self.evidence.get(rel)
        return out

    def sources(self) -> tuple[int, int]:
        """How many of the runs read were found done in their folders, and how many in the evidence alone."""
        found = {rel for rel in self._scanned if rel in self.evidence}
        return len(found & self.from_folders), len(found - self.from_folders)


def reproduces(new, old) -> bool:
    """A run whose greedy test outputs give exactly the labels of an older line of the same run (and pairs)."""
    a = {p["id"]: p.get("pred") for p in new.predictions}
    return len(a) == len(old.predictions) and all(a.get(p["id"], "\0") == p.get("pred") for p in old.predictions)


def check_analysis(path: Path, runs: dict) -> None:
    """Refuse runs made for this experiment under another analysis: a run records each experiment file it was
    started for with the hash of its `analysis` (ablate.analysis_hash); the analysis is fixed before the runs."""
    from she_bench.ablate import analysis_hash

    want = analysis_hash(path)
    for by_seed in runs.values():
        for ev in by_seed.values():
            for rec in (ev.experiments if ev is not None else []):
                if rec.get("file") == Path(path).name and rec.get("analysis_hash") != want:
                    raise ConfigError(f"{path}: run {ev.rel} was made for this experiment under analysis "
                                      f"{rec.get('analysis_hash')}, but the file's analysis is now {want}: an analysis "
                                      "is fixed before its runs (restore it, or run the experiment again)")


def pair_builds(runs: list) -> str:
    """'ok' when runs of one warm-start identity share one build, 'cross' when two known builds meet, 'unverified'
    when a build could not be told (an old line whose labels link to no other row)."""
    from she_bench.config import warm_start_identity
    from she_bench.report.evidence import undetermined

    by_cell: dict[str, set] = {}
    unknown = False
    for r in runs:
        if undetermined(r.build):
            unknown = True
        else:
            by_cell.setdefault(warm_start_identity(r.config), set()).add(r.build["id"])
    if any(len(ids) > 1 for ids in by_cell.values()):
        return "cross"
    return "unverified" if unknown and len(runs) > 1 else "ok"


def analyse(exp: dict, runs: dict, n_boot: int = BOOTSTRAP) -> dict:
    """An experiment's fixed analysis over its runs (RunIndex.runs_of: each run's Evidence). Estimates use the seeds
    done on both sides; a test is complete when every declared seed is."""
    a, knob = exp["analysis"], exp.get("knob") or {}
    seeds = list(exp.get("seeds") or [0])
    endpoint, subset, direction = (a.get("endpoint", "accuracy"), a.get("subset", "overall"),
                                   a.get("direction", "higher"))

    def have(recipe, level) -> dict:
        return {s: r for s, r in runs.get((recipe, _key(level)), {}).items() if r is not None}

    def test(arms_spec: list[tuple[float, str, object]], ep: str, sub: str, **info) -> dict:
        got = [have(recipe, level) for _, recipe, level in arms_spec]
        done = [s for s in seeds if all(s in g for g in got)]
        pairing = {s: pair_builds([g[s] for g in got]) for s in done}
        common = [s for s in done if pairing[s] != "cross"]
        out = {**info, "endpoint": ep, "subset": sub, "seeds": common, "complete": len(common) == len(seeds),
               "cross_build_seeds": [s for s in done if pairing[s] == "cross"],
               "unverified_seeds": [s for s in done if pairing[s] == "unverified"]}
        if not common:
            return {**out, "status": "missing"}
        try:
            est = effect([(c, [g[s] for s in common]) for (c, _, _), g in zip(arms_spec, got)], ep, sub, n_boot)
        except ValueError as e:
            return {**out, "status": "error", "error": str(e)}
        return {**out, "status": "ok", **est, "mdd": detectable(est)}

    def pair(variant, versus, level, versus_level=None, ep=None, sub=None) -> dict:
        vl = level if versus_level is None else versus_level
        return test([(1.0, variant, level), (-1.0, versus, vl)], ep or endpoint, sub or subset, variant=variant,
                    versus=versus, level=level, **({} if versus_level is None else {"versus_level": versus_level}))

    out: dict = {"name": exp.get("name"), "claim": exp.get("claim"), "description": exp.get("description", ""),
                 "endpoint": endpoint, "subset": subset, "direction": direction, "seeds": seeds, "knob": knob,
                 "n_boot": n_boot, "builds": builds(runs), "history": list(exp.get("history") or [])}
    if "aa" in a:
        recipe = a["aa"]["variant"]
        done = have(recipe, knob.get("default"))
        out["aa_variant"] = recipe
        if len(done) < len(seeds):
            out["aa"] = {"status": "missing", "done": sorted(done), "seeds": seeds}
            return out
        out["aa"] = {ep: aa_splits([done[s] for s in seeds], ep, subset, n_boot)
                     for ep in a["aa"].get("endpoints", [endpoint])}
        return out
    prim = a["primary"]
    versus = prim["versus"] if isinstance(prim["versus"], list) else [prim["versus"]]
    sign = 1 if direction == "higher" else -1

    def combined(parts: list[dict]) -> dict:
        """Intersection-union over the comparators: the variant must beat each; the smaller effect in the predicted
        direction stands for them, with the larger p."""
        if any(p["status"] != "ok" for p in parts):
            bad = next(p for p in parts if p["status"] != "ok")
            return {**bad, "parts": parts, "complete": all(p["complete"] for p in parts)}
        worst = min(parts, key=lambda p: sign * p["diff"])
        return {**worst, "p_value": max(p["p_value"] if p["p_value"] is not None else 1.0 for p in parts),
                "complete": all(p["complete"] for p in parts), "parts": parts}

    out["primary"] = combined([pair(prim["variant"], v, prim["level"]) for v in versus])
    out["levels"] = [{"level": lv, **combined([pair(prim["variant"], v, lv) for v in versus])} for lv in knob["levels"]]
    others = [lv for lv in knob["levels"] if lv != prim["level"]]
    if others:  # the effect's change from the first other level to the primary one (a contrast of four arms)
        lo = others[0]
        out["interaction"] = [test([(1.0, prim["variant"], prim["level"]), (-1.0, v, prim["level"]),
                                    (-1.0, prim["variant"], lo), (1.0, v, lo)], endpoint, subset,
                                   variant=prim["variant"], versus=v, level=prim["level"], from_level=lo)
                              for v in versus]
    out["margin"] = {"value": a["margin"], "why": " ".join(str(a["margin_why"]).split()),
                     "post_hoc": bool(a.get("margin_post_hoc")), "predicted_effect": a["predicted_effect"]}
    est = out["primary"]
    est["equivalent"] = (all(equivalent(p, a["margin"]) for p in est.get("parts", [est]))
                         if est["status"] == "ok" else None)
    pc = a["positive_control"]
    t = pair(pc["variant"], pc.get("versus", pc["variant"]), pc["level"], pc.get("versus_level"), pc.get("endpoint"))
    out["positive_control"] = {**t, "direction": pc.get("direction", direction), "post_hoc": bool(pc.get("post_hoc")),
                               "detected": t["status"] == "ok" and detected(t, pc.get("direction", direction))}
    nc = a["negative_control"]
    t = pair(nc["variant"], nc["versus"], nc["level"], ep=nc.get("endpoint"))
    nc_margin = nc.get("margin", a["margin"])
    out["negative_control"] = {**t, "margin": nc_margin,
                               "equivalent": equivalent(t, nc_margin) if t["status"] == "ok" else None}
    out["row_means"] = row_means(runs, endpoint, subset, n_boot)
    out["stages"] = {recipe: stages(list(have(recipe, prim["level"]).values()))
                     for recipe in [prim["variant"], *versus]}
    primary_rows = [[prim["variant"], v] for v in versus]
    out["secondary"] = [pair(v, w, prim["level"], ep=ep, sub=sub)  # exploratory: no Holm, no verdict
                        for ep in [endpoint, *a.get("secondary_endpoints", [])]
                        for sub in [subset, *a.get("secondary_subsets", [])]
                        for v, w in primary_rows + list(a.get("secondary_rows", []))
                        if not (ep == endpoint and sub == subset and [v, w] in primary_rows)]
    return out


def builds(runs: dict) -> list[dict]:
    """Per knob level and seed, the build each row started from: [{level, seed, rows: {recipe: build id}}]."""
    out: dict = {}
    for (recipe, level), by_seed in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for seed, ev in sorted(by_seed.items()):
            cell = out.setdefault((level, seed), {"level": json.loads(level), "seed": seed, "rows": {}})
            cell["rows"][recipe] = (ev.build or {}).get("id", "-") if ev is not None else "not done"
    return list(out.values())


def row_means(runs: dict, endpoint: str, subset: str, n_boot: int) -> list[dict]:
    """Each row's mean endpoint per knob level over its done seeds, with its interval (what the contrasts are
    differences of)."""
    out = []
    for (recipe, level), by_seed in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        done = [by_seed[s] for s in sorted(by_seed) if by_seed[s] is not None]
        if not done:
            continue
        try:
            est = effect([(1.0, done)], endpoint, subset, n_boot)
        except ValueError:
            continue
        out.append({"level": json.loads(level), "row": recipe, "mean": est["diff"], "lo": est["lo"], "hi": est["hi"],
                    "seeds": len(done)})
    return out


def stages(runs: list) -> list[dict]:
    """A row's training stages as its runs logged them (curriculum stages, each with its prompts and steps; mean
    over the runs): what a curriculum or a filter had to work with."""
    seen: dict[str, dict] = {}
    for r in runs:
        for e in r.train_log:
            if e.get("event") == "stage_start":
                st = seen.setdefault(e["stage"], {"stage": e["stage"], "method": e.get("method"), "prompts": [],
                                                  "steps": e.get("steps")})
                st["prompts"].append(e.get("prompts", 0))
    return [{**st, "prompts": round(sum(st["prompts"]) / len(st["prompts"]), 1)} for st in seen.values()]


def aa_splits(per_seed_runs: list, endpoint: str, subset: str = "overall", n_boot: int = BOOTSTRAP) -> dict:
    """A/A: one recipe's 2m seeds in one cell, split every way into m against m (6 seeds: 10 splits, each pair of
    halves once), each split tested like a primary comparison; how many come out significant at ALPHA (about 5%
    expected)."""
    n = len(per_seed_runs)
    if n < 2 or n % 2:
        raise ValueError(f"A/A needs an even number (>= 2) of seeds, got {n}")
    results = []
    for a in (c for c in combinations(range(n), n // 2) if 0 in c):
        b = [i for i in range(n) if i not in a]
        est = effect([(1.0, [per_seed_runs[i] for i in a]), (-1.0, [per_seed_runs[i] for i in b])], endpoint,
                     subset, n_boot)
        results.append({"a": list(a), "b": b, "diff": est["diff"], "lo": est["lo"], "hi": est["hi"],
                        "p_value": est["p_value"]})
    sig = sum(r["p_value"] is not None and r["p_value"] < ALPHA for r in results)
    ci = binomtest(sig, len(results)).proportion_ci(0.95, method="exact")
    # the splits reuse the same runs, so they are not independent trials: the interval is a floor on the uncertainty
    return {"status": "ok", "splits": len(results), "significant": sig,
            "rate_ci": [round(ci.low, 4), round(ci.high, 4)], "results": results}


def decide(results: list[dict]) -> list[dict]:
    """Holm across the experiments' primary tests (an incomplete one enters with p = 1, so the family keeps its
    declared size), then each one's verdict; `mdd_holm` is the primary test's minimum detectable difference at
    alpha / (the family's size), the level Holm's first step tests at."""
    claims = [r for r in results if "primary" in r]
    ps = [r["primary"]["p_value"] if r["primary"]["status"] == "ok" and r["primary"]["complete"]
          and r["primary"]["p_value"] is not None else 1.0 for r in claims]
    for r, p in zip(claims, holm(ps)):
        r["primary"]["p_holm"] = p
        prim, pc, nc = r["primary"], r["positive_control"], r["negative_control"]
        # what the corrected test can detect: Holm's first step tests at alpha / (the family's size)
        prim["mdd_holm"] = detectable(prim, ALPHA / len(claims)) if prim["status"] == "ok" else None
        if not (prim["complete"] and pc["complete"]):
            r["verdict"] = INCOMPLETE  # runs still to do: no verdict yet
        else:  # an endpoint with nothing to count is not detected (control) or not significant (primary)
            r["verdict"] = verdict(prim.get("diff"), p, r["direction"], pc["detected"],
                                   nc.get("equivalent") if nc.get("complete") else None, prim.get("equivalent"))
    return results


def proxies(exp: dict, runs: dict) -> list[str]:
    """What in the experiment's runs stands in for the real thing, read from their configs: an oracle GRM, a test
    subset, a toy model on a CPU, the training budget."""
    configs = [r.config for by_seed in runs.values() for r in by_seed.values() if r is not None]
    out = set()
    for c in configs:
        rew, ev = c.get("reward") or {}, c.get("eval") or {}
        if c.get("method") in ("srpo", "she") and rew.get("grm") == "oracle" and rew.get("mixing") != "verifier_only":
            out.add(f"oracle GRM (gold steps flipped at rate {rew.get('grm_error_rate')}), not a trained judge")
        if ev.get("subset"):
            out.add(f"test subset of at least {ev['subset']} pairs")
        if ev.get("samples") and ev.get("samples_subset"):
            out.add(f"pass@{ev['samples']} on a query-stratified test subset of at least {ev['samples_subset']} pairs")
        if str(c.get("model", "")).startswith("toy-"):
            from she_bench.models import BASES

            made = "pretrained on catalogue text" if c["model"] in BASES else "trained from scratch"
            out.add(f"{c['model']} (a toy model {made}) on a CPU")
        if c.get("method") in ("grpo", "srpo", "she"):
            out.add(f"RL budget {(c.get('train') or {}).get('max_steps')} steps x "
                    f"{(c.get('train') or {}).get('prompts_per_step')} prompts")
    return sorted(out)


def build_claims(experiments: list[Path], runs: Path | RunIndex, n_boot: int = BOOTSTRAP,
                 profile: str | None = None) -> list[dict]:
    """Every experiment file analysed over its runs (those under a runs folder, or a RunIndex that may also hold
    evidence), with Holm and verdicts."""
    index, results = runs if isinstance(runs, RunIndex) else RunIndex(runs, profile), []
    for path in experiments:
        exp = load_experiment(Path(path), index.profile)
        runs_ = index.runs_of(Path(path), exp)
        check_analysis(Path(path), runs_)
        done = sum(r is not None for by_seed in runs_.values() for r in by_seed.values())
        total = sum(len(by_seed) for by_seed in runs_.values())
        results.append({**analyse(exp, runs_, n_boot), "file": Path(path).name, "runs_done": done,
                        "runs_declared": total, "proxies": proxies(exp, runs_)})
    return decide(results)
