"""reports/claims/: one page per claim experiment and a summary, in Markdown and in one HTML page, with a
dose-response plot per claim and a bsuite-style summary plot of all claims.

Every page is built once as a list of blocks (heading, paragraph, list, table, figure) and rendered both ways, so
the Markdown and the HTML say the same thing. Byte-identical for the same runs: sorted JSON, rounded numbers,
PNGs without a timestamp.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

from matplotlib.figure import Figure

from she_bench.report.html import _STYLE, data_uri

VERDICT_COLORS = {"supported": "#2a9d4b", "contradicted": "#c0392b", "absent": "#3b6fb6",
                  "negative control not equivalent": "#8e44ad", "inconclusive at this power": "#e6a100",
                  "unable to see": "#7f7f7f", "incomplete": "#c8c8c8"}
VERDICT_MEANING = {
    "supported": "the predicted direction, significant after Holm, the positive control detected, the negative "
                 "control equivalent to zero within the margin",
    "contradicted": "the opposite direction, significant after Holm, with the same controls",
    "negative control not equivalent": "significant after Holm, but a change that must show nothing was not shown "
                                       "equivalent to zero: the difference may be the apparatus's",
    "absent": "not significant and the primary effect itself equivalent to zero within the margin (90% interval "
              "inside it), the positive control detected: no effect of a size that matters",
    "inconclusive at this power": "none of these: the interval holds both zero and effects larger than the margin",
    "unable to see": "the positive control, a contrast of the primary's kind with a known effect, was not detected",
    "incomplete": "runs (or same-build pairs) still missing"}


def _f(x, nd: int = 3, sign: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def _p(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def _nd(t: dict) -> int:
    """Decimals an estimate needs: enough to show its interval's half-width to two significant digits (at least 3):
    an entropy effect of +0.00031 [+0.00002, +0.00061] is not printed as +0.000."""
    if t.get("lo") is None or t.get("hi") is None or t["hi"] <= t["lo"]:
        return 3
    return max(3, min(8, 1 - math.floor(math.log10((t["hi"] - t["lo"]) / 2))))


def _level(v) -> str:
    return "+".join(map(str, v)) if isinstance(v, list) else str(v)


def _comparison(t: dict) -> str:
    vl = f" @ {_level(t['versus_level'])}" if "versus_level" in t else ""
    return f"{t['variant']} @ {_level(t['level'])} - {t['versus']}{vl}"


def _estimate(t: dict) -> str:
    if t.get("status") != "ok":
        if t.get("cross_build_seeds"):
            return f"no same-build pair (seeds {', '.join(map(str, t['cross_build_seeds']))} across builds)"
        return t.get("error") or "no runs"
    nd = _nd(t)
    return f"{_f(t['diff'], nd)} [{_f(t['lo'], nd)}, {_f(t['hi'], nd)}]"


def _seeds(t: dict, declared: list) -> str:
    got = t.get("seeds") or []
    text = f"{len(got)} of {len(declared)}" if len(got) != len(declared) else str(len(got))
    if t.get("cross_build_seeds"):
        text += f" ({len(t['cross_build_seeds'])} left out: across builds)"
    if t.get("unverified_seeds"):
        text += f" ({len(t['unverified_seeds'])} build unverified)"
    return text


def _control_outcome(name: str, t: dict) -> str:
    if t.get("status") != "ok":
        return "no same-build pair" if t.get("cross_build_seeds") else "no runs"
    if not t.get("complete"):
        return "incomplete"
    if name == "positive":
        return "detected" if t["detected"] else "not detected"
    return {True: f"equivalent within +-{t['margin']:g} (TOST)",
            False: f"not shown equivalent within +-{t['margin']:g}", None: "not measurable"}[t["equivalent"]]


def primary_line(r: dict) -> str:
    p = r["primary"]
    if p.get("status") != "ok":
        return f"Primary test: {p.get('error') or 'no runs yet'}."
    parts = p.get("parts", [])
    iu = (f" (intersection-union over {', '.join(x['versus'] for x in parts)}: the smaller effect, the larger p)"
          if len(parts) > 1 else "")
    done = "" if p["complete"] else f" Provisional: {len(p['seeds'])} of {len(r['seeds'])} seeds done."
    eq = {True: "equivalent to zero within the margin", False: "not shown equivalent to zero within the margin",
          None: "equivalence not measurable"}[p.get("equivalent")]
    return (f"Primary test: {_comparison(p)} on {r['endpoint']} ({r['subset']}) = {_estimate(p)}{iu}, "
            f"p = {_p(p['p_value'])}, Holm-adjusted p = {_p(p.get('p_holm'))}; {eq}; "
            f"minimum detectable difference {_f(p.get('mdd'), sign=False)} at {len(p['seeds'])} seeds "
            f"(alpha 0.05), {_f(p.get('mdd_holm'), sign=False)} at Holm's first step.{done}")


def claim_blocks(r: dict) -> list[tuple]:
    """One claim experiment's page."""
    knob = r["knob"]
    b: list[tuple] = [("h1", f"{r['name']}: {r['claim']}", r["name"])]
    if r.get("description"):
        b.append(("p", " ".join(r["description"].split())))
    b.append(("p", f"File benchmarks/experiments/{r['file']}; knob {knob['key']} at levels "
                   f"{', '.join(_level(v) for v in knob['levels'])}; seeds {', '.join(map(str, r['seeds']))}; "
                   f"{r['runs_done']} of {r['runs_declared']} runs done."))
    p = r["primary"]
    b.append(("p", f"Prediction, fixed in the file before its runs: {p.get('variant')} is "
                   f"{r['direction']} than {', '.join(x['versus'] for x in p.get('parts', []))} on {r['endpoint']} "
                   f"({r['subset']}) at level {_level(p.get('level'))}."))
    m = r.get("margin") or {}
    if m:
        b.append(("p", f"Equivalence margin +-{m['value']:g} on {r['endpoint']} "
                       f"(predicted effect {m['predicted_effect']:g}"
                       f"{'; declared after the runs, post hoc' if m.get('post_hoc') else '; declared before the runs'}"
                       f"): {m['why']}"))
    b.append(("h2", f"Verdict: {r['verdict']}"))
    b.append(("p", f"{r['verdict']}: {VERDICT_MEANING.get(r['verdict'], '')}."))
    b.append(("p", primary_line(r)))
    rows = []
    for lv in r["levels"]:
        for t in lv.get("parts", [lv]):
            rows.append([_level(lv["level"]), _comparison(t), _estimate(t), _p(t.get("p_value")),
                         _f(t.get("mdd"), sign=False), _seeds(t, r["seeds"])])
    for t in r.get("interaction", []):
        rows.append([f"{_level(t['level'])} vs {_level(t['from_level'])}", f"change of {t['variant']} - {t['versus']}",
                     _estimate(t), _p(t.get("p_value")), _f(t.get("mdd"), sign=False), _seeds(t, r["seeds"])])
    b.append(("h2", "Effect at each level"))
    b.append(("table", ["level", "comparison", f"{r['endpoint']} effect [95% CI]", "p", "MDD", "seeds"], rows))
    b.append(("figure", f"{r['name']}.png", f"Dose-response: the primary effect on {r['endpoint']} at each knob level, "
                                            "95% intervals over seeds x queries; dashes: +-MDD at the primary level."))
    b.append(("h2", "Controls"))
    crow = []
    for name, key in (("positive", "positive_control"), ("negative", "negative_control")):
        t = r[key]
        label = name + (" (declared after the runs)" if t.get("post_hoc") else "")
        crow.append([label, _comparison(t), t.get("endpoint", "-"), _estimate(t), _p(t.get("p_value")),
                     _seeds(t, r["seeds"]), _control_outcome(name, t)])
    b.append(("table", ["control", "comparison", "endpoint", "effect [95% CI]", "p", "seeds", "outcome"], crow))
    b.append(("p", "The positive control is a contrast of the primary's kind whose effect is known by construction: "
                   "it must be detected (predicted direction, p < 0.05) or the experiment has no verdict. The negative "
                   "control is a change that must show nothing: it passes by two one-sided tests (its 90% interval "
                   "inside +-the margin), and a significant primary counts only when it passes."))
    if r.get("row_means"):
        b.append(("h2", f"Row means of {r['endpoint']} ({r['subset']}) per level"))
        b.append(("table", ["level", "row", "mean [95% CI]", "seeds"],
                  [[_level(x["level"]), x["row"], _estimate({**x, "diff": x["mean"], "status": "ok"}).replace("+", ""),
                    x["seeds"]] for x in r["row_means"]]))
    if r.get("builds"):
        recipes = sorted({row for c in r["builds"] for row in c["rows"]})
        b.append(("h2", "Builds: the warm-start weights each row started from"))
        b.append(("p", "Rows are compared only on one build. An id is the first 12 hex digits of the warm start's "
                       "weights hash; 'inferred-' ids are builds inferred from label agreement for runs made before "
                       "builds were recorded, 'undetermined-' where a row's labels tie it to no other (SFT and DPO "
                       "rows move far from their warm start); pairs with one are used and counted as unverified. "
                       "Where a rebuild reproduced a row label for label, the rows inferred to share its build carry "
                       "the rebuild's id (evidence.jsonl.xz marks them inferred, linked_by that row)."))
        b.append(("table", ["level", "seed", *recipes],
                  [[_level(c["level"]), c["seed"], *[c["rows"].get(x, "") for x in recipes]] for c in r["builds"]]))
    if r.get("history"):
        b.append(("h2", "Earlier executions"))
        b.append(("ul", [" ".join(str(h).split()) for h in r["history"]]))
    if r.get("secondary"):
        b.append(("h2", "Secondary comparisons (exploratory: no correction, no verdict)"))
        b.append(("table", ["comparison", "endpoint", "subset", "effect [95% CI]", "p", "seeds"],
                  [[_comparison(t), t["endpoint"], t["subset"], _estimate(t), _p(t.get("p_value")),
                    _seeds(t, r["seeds"])] for t in r["secondary"]]))
    staged = {k: v for k, v in (r.get("stages") or {}).items() if v}
    if staged:
        b.append(("h2", "Training stages of the primary rows (as logged; prompts: mean over seeds)"))
        b.append(("table", ["row", "stage", "method", "prompts", "steps"],
                  [[row, st["stage"], st["method"], st["prompts"], st["steps"]] for row, sts in staged.items()
                   for st in sts]))
    if r.get("proxies"):
        b.append(("h2", "Stand-ins in these runs"))
        b.append(("ul", r["proxies"]))
    return b


def aa_blocks(r: dict) -> list[tuple]:
    b: list[tuple] = [("h1", f"{r['name']}: {r['claim']}", r["name"])]
    aa = r["aa"]
    if aa.get("status") == "missing":
        b.append(("p", f"Incomplete: seeds {aa['done']} of {aa['seeds']} of {r['aa_variant']} done."))
        return b
    for ep, res in aa.items():
        lo, hi = res.get("rate_ci") or (None, None)
        ci = (f"; rate 95% interval [{lo:.2f}, {hi:.2f}] if the splits were independent, which they are not"
              if lo is not None else "")
        b.append(("h2", f"{ep}: {res['significant']} of {res['splits']} splits significant at 0.05 "
                        f"(about 5% expected{ci})"))
        b.append(("table", ["seeds A", "seeds B", "A - B [95% CI]", "p"],
                  [[",".join(str(r["seeds"][i]) for i in x["a"]), ",".join(str(r["seeds"][i]) for i in x["b"]),
                    f"{_f(x['diff'])} [{_f(x['lo'])}, {_f(x['hi'])}]", _p(x["p_value"])] for x in res["results"]]))
    return b


def summary_blocks(results: list[dict], command: str, refused: list[dict] | None = None) -> list[tuple]:
    n_boot = next((r["n_boot"] for r in results if r.get("n_boot")), None)
    b: list[tuple] = [("h1", "Claims of SHE, one controlled experiment each"),
                      ("p", "Each claim's primary test (variant - comparator at the knob's primary level, 95% interval "
                            "over seeds x queries, Holm across the primary tests), its controls and the verdict. "
                            f"Intervals and p-values use {n_boot} query bootstrap resamples. Regenerate: {command}")]
    rows = []
    for r in results:
        if "aa" in r:
            continue
        p = r["primary"]
        rows.append([r["name"], f"{r['endpoint']} ({r['subset']})", _comparison(p) if "variant" in p else "-",
                     r["direction"], _estimate(p), _p(p.get("p_holm")), _f(p.get("mdd_holm"), sign=False),
                     _control_outcome("positive", r["positive_control"]),
                     _control_outcome("negative", r["negative_control"]), r["verdict"],
                     f"{r['runs_done']}/{r['runs_declared']}"])
    b.append(("table", ["claim", "endpoint", "primary", "predicted", "effect [95% CI]", "p (Holm)", "MDD (Holm)",
                        "positive control", "negative control", "verdict", "runs"], rows))
    b.append(("ul", [f"{v}: {VERDICT_MEANING[v]}" for v in VERDICT_MEANING]))
    if refused:
        b.append(("h2", "Run folders not merged"))
        b.append(("ul", [f"{x['rel']}: build {x['folder_build']}, its evidence line's {x['line_build']}: {x['reason']}"
                         for x in refused]))
    b.append(("figure", "summary.png", "Each claim's primary effect in its predicted direction, in units of its "
                                       "minimum detectable difference at Holm's first step (1 = detectable at 80% "
                                       "power after the correction), with its 95% "
                                       "interval; colour: the verdict."))
    for r in results:
        if "aa" not in r:
            continue
        aa = r["aa"]
        if aa.get("status") == "missing":
            b.append(("p", f"A/A ({r['aa_variant']}): incomplete, seeds {aa['done']} of {aa['seeds']} done."))
        else:
            b.append(("p", "A/A (" + r["aa_variant"] + ", " + str(len(r["seeds"])) + " seeds, every 3-vs-3 split): "
                      + "; ".join(f"{ep} {x['significant']} of {x['splits']} significant" for ep, x in aa.items())
                      + " (about 5% expected)."))
    b.append(("links", [r["name"] for r in results]))
    return b


def markdown(blocks: list[tuple]) -> str:
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2"):
            out += [("# " if kind == "h1" else "## ") + blk[1], ""]
        elif kind == "p":
            out += [blk[1], ""]
        elif kind == "ul":
            out += [f"- {x}" for x in blk[1]] + [""]
        elif kind == "links":
            out += [f"- [{x}]({x}.md)" for x in blk[1]] + [""]
        elif kind == "table":
            out += ["| " + " | ".join(blk[1]) + " |", "|" + "---|" * len(blk[1])]
            out += ["| " + " | ".join(str(c) for c in row) + " |" for row in blk[2]] + [""]
        elif kind == "figure":
            out += [f"![{blk[2]}]({blk[1]})", ""]
    return "\n".join(out).rstrip() + "\n"


def html_blocks(blocks: list[tuple], out_dir: Path, shift: int = 0) -> list[str]:
    e, out = html.escape, []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2"):
            n = (1 if kind == "h1" else 2) + shift
            anchor = f' id="{e(blk[2])}"' if len(blk) > 2 else ""
            out.append(f"<h{n}{anchor}>{e(blk[1])}</h{n}>")
        elif kind == "p":
            out.append(f"<p>{e(blk[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "links":
            out.append("<ul>" + "".join(f'<li><a href="#{e(x)}">{e(x)}</a></li>' for x in blk[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in blk[1])
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in blk[2])
            out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
        elif kind == "figure":
            out.append(f'<figure><img alt="{e(blk[1])}" src="{data_uri(out_dir / blk[1])}">'
                       f"<figcaption>{e(blk[2])}</figcaption></figure>")
    return out


def dose_response_plot(r: dict, path: Path) -> None:
    fig = Figure(figsize=(6.0, 3.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    levels = [lv["level"] for lv in r["levels"]]
    parts = r["levels"][0].get("parts", [r["levels"][0]])
    width = 0.5 / max(1, len(parts))
    for i, part in enumerate(parts):
        xs, ys, lo, hi = [], [], [], []
        for j, lv in enumerate(r["levels"]):
            t = lv.get("parts", [lv])[i]
            if t.get("status") == "ok" and t.get("lo") is not None:
                xs.append(j + (i - (len(parts) - 1) / 2) * width)
                ys.append(t["diff"])
                lo.append(t["diff"] - t["lo"])
                hi.append(t["hi"] - t["diff"])
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, label=f"{part.get('variant')} - {part.get('versus')}")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    m = r["primary"].get("mdd")
    if m:
        for y in (m, -m):
            ax.axhline(y, color="0.5", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(levels)), [_level(v) for v in levels])
    ax.set_xlim(-0.5, len(levels) - 0.5)
    ax.set_xlabel(r["knob"]["key"])
    ax.set_ylabel(f"{r['endpoint']} ({r['subset']}) effect")
    ax.set_title(f"{r['name']} ({r['direction']} predicted): {r['verdict']}", loc="left", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    fig.savefig(path, format="png", metadata={"Software": None})


def summary_plot(results: list[dict], path: Path) -> None:
    claims = [r for r in results if "primary" in r]
    fig = Figure(figsize=(6.5, 0.55 * len(claims) + 1.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(claims):
        p, y = r["primary"], len(claims) - 1 - i
        sign = 1 if r["direction"] == "higher" else -1
        if p.get("status") == "ok" and p.get("mdd_holm") and p.get("lo") is not None:
            z, a, b = (sign * p[k] / p["mdd_holm"] for k in ("diff", "lo", "hi"))
            lo, hi = min(a, b), max(a, b)
            ax.barh(y, z, color=VERDICT_COLORS.get(r["verdict"], "#c8c8c8"), height=0.6)
            ax.errorbar([z], [y], xerr=[[z - lo], [hi - z]], fmt="none", color="0.2", capsize=3)
        else:
            ax.text(0.02, y, "no estimate", va="center", color="0.4", transform=ax.get_yaxis_transform())
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.axvline(1.0, color="0.5", linewidth=0.8, linestyle="--")
    ax.set_ylim(-0.5, len(claims) - 0.5)
    ax.set_yticks(range(len(claims)), [f"{r['name']}\n{r['verdict']}" for r in reversed(claims)], fontsize=8)
    ax.set_xlabel("primary effect in the predicted direction / MDD at Holm's first step")
    fig.savefig(path, format="png", metadata={"Software": None})


def write_claims(results: list[dict], out: Path, command: str, refused: list[dict] | None = None) -> None:
    """claims.json, summary.md, <claim>.md, the plots and index.html under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    pages = []
    for r in results:
        if "aa" in r:
            blocks = aa_blocks(r)
        else:
            dose_response_plot(r, out / f"{r['name']}.png")
            blocks = claim_blocks(r)
        (out / f"{r['name']}.md").write_text(markdown(blocks))
        pages.append(blocks)
    summary_plot(results, out / "summary.png")
    summary = summary_blocks(results, command, refused or [])
    (out / "summary.md").write_text(markdown(summary))
    body = html_blocks(summary, out)
    for blocks in pages:
        body += html_blocks(blocks, out, shift=1)
    doc = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', "<title>she-bench claims</title>",
           f"<style>{_STYLE}</style>", "</head>", "<body>", *body, "</body>", "</html>"]
    (out / "index.html").write_text("\n".join(doc) + "\n")
