"""reports/claims/: one page per claim experiment and a summary, in Markdown and in one HTML page, with a
dose-response plot per claim and a bsuite-style summary plot of all claims.

Every page is built once as a list of blocks (heading, paragraph, list, table, figure) and rendered both ways, so
the Markdown and the HTML say the same thing. Byte-identical for the same runs: sorted JSON, rounded numbers,
PNGs without a timestamp.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from matplotlib.figure import Figure

from she_bench.report.html import _STYLE, data_uri

VERDICT_COLORS = {"supported": "#2a9d4b", "contradicted": "#c0392b", "inconclusive at this power": "#e6a100",
                  "unable to see": "#7f7f7f", "incomplete": "#c8c8c8"}


def _f(x, nd: int = 3, sign: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def _p(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def _level(v) -> str:
    return "+".join(map(str, v)) if isinstance(v, list) else str(v)


def _comparison(t: dict) -> str:
    vl = f" @ {_level(t['versus_level'])}" if "versus_level" in t else ""
    return f"{t['variant']} @ {_level(t['level'])} - {t['versus']}{vl}"


def _estimate(t: dict) -> str:
    if t.get("status") != "ok":
        return t.get("error") or "no runs"
    return f"{_f(t['diff'])} [{_f(t['lo'])}, {_f(t['hi'])}]"


def _seeds(t: dict, declared: list) -> str:
    got = t.get("seeds") or []
    return f"{len(got)} of {len(declared)}" if len(got) != len(declared) else str(len(got))


def _control_outcome(name: str, t: dict) -> str:
    if t.get("status") != "ok":
        return "no runs"
    if not t.get("complete"):
        return "incomplete"
    if name == "positive":
        return "detected" if t["detected"] else "not detected"
    return {True: "equivalent within +-MDD", False: "not shown equivalent", None: "not measurable"}[t["equivalent"]]


def primary_line(r: dict) -> str:
    p = r["primary"]
    if p.get("status") != "ok":
        return f"Primary test: {p.get('error') or 'no runs yet'}."
    parts = p.get("parts", [])
    iu = (f" (intersection-union over {', '.join(x['versus'] for x in parts)}: the smaller effect, the larger p)"
          if len(parts) > 1 else "")
    done = "" if p["complete"] else f" Provisional: {len(p['seeds'])} of {len(r['seeds'])} seeds done."
    return (f"Primary test: {_comparison(p)} on {r['endpoint']} ({r['subset']}) = {_f(p['diff'])} "
            f"[{_f(p['lo'])}, {_f(p['hi'])}]{iu}, p = {_p(p['p_value'])}, Holm-adjusted p = {_p(p.get('p_holm'))}; "
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
    b.append(("h2", f"Verdict: {r['verdict']}"))
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
        crow.append([name, _comparison(t), t.get("endpoint", "-"), _estimate(t), _p(t.get("p_value")),
                     _f(t.get("mdd"), sign=False), _control_outcome(name, t)])
    b.append(("table", ["control", "comparison", "endpoint", "effect [95% CI]", "p", "MDD", "outcome"], crow))
    b.append(("p", "A positive control must be detected (predicted direction, p < 0.05) or the experiment has no "
                   "verdict; a negative control must have its whole interval inside +-its MDD (equivalence, not a "
                   "mere non-significant difference)."))
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
        b.append(("h2", f"{ep}: {res['significant']} of {res['splits']} splits significant at 0.05 (about 5% expected)"))
        b.append(("table", ["seeds A", "seeds B", "A - B [95% CI]", "p"],
                  [[",".join(str(r["seeds"][i]) for i in x["a"]), ",".join(str(r["seeds"][i]) for i in x["b"]),
                    f"{_f(x['diff'])} [{_f(x['lo'])}, {_f(x['hi'])}]", _p(x["p_value"])] for x in res["results"]]))
    return b


def summary_blocks(results: list[dict], command: str) -> list[tuple]:
    b: list[tuple] = [("h1", "Claims of SHE, one controlled experiment each"),
                      ("p", "Each claim's primary test (variant - comparator at the knob's primary level, 95% interval "
                            "over seeds x queries, Holm across the primary tests), its controls and the verdict. "
                            f"Regenerate: {command}")]
    rows = []
    for r in results:
        if "aa" in r:
            continue
        p = r["primary"]
        rows.append([r["name"], f"{r['endpoint']} ({r['subset']})", _comparison(p) if "variant" in p else "-",
                     r["direction"], _estimate(p), _p(p.get("p_holm")), _f(p.get("mdd_holm"), sign=False),
                     _control_outcome("positive", r["positive_control"]),
                     _control_outcome("negative", r["negative_control"]), r["verdict"], f"{r['runs_done']}/{r['runs_declared']}"])
    b.append(("table", ["claim", "endpoint", "primary", "predicted", "effect [95% CI]", "p (Holm)", "MDD (Holm)",
                        "positive control", "negative control", "verdict", "runs"], rows))
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


def write_claims(results: list[dict], out: Path, command: str) -> None:
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
    summary = summary_blocks(results, command)
    (out / "summary.md").write_text(markdown(summary))
    body = html_blocks(summary, out)
    for blocks in pages:
        body += html_blocks(blocks, out, shift=1)
    doc = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', "<title>she-bench claims</title>",
           f"<style>{_STYLE}</style>", "</head>", "<body>", *body, "</body>", "</html>"]
    (out / "index.html").write_text("\n".join(doc) + "\n")
