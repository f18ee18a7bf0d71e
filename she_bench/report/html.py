"""The report as one self-contained HTML page: tables inline, plots as base64 data URIs."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from she_bench.report.tables import Table

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #555; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
caption { caption-side: top; text-align: left; padding: 0.3em 0; color: #444; max-width: 1100px; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; white-space: nowrap; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; }
ul.notes { font-size: 0.85em; color: #555; }
"""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def page(header: dict, sections: list[tuple[str, list]], out_dir: Path, plots: dict[str, str]) -> str:
    """header: {"benchmarks", "variants": [(benchmark, name, seeds)], "n_runs", "n_skipped", "baseline",
    "command"}; sections: (title, items) where an item is a Table or a plot file name (in out_dir)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           "<title>she-bench report</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
           "<h1>she-bench report</h1>"]
    benches = ", ".join(header["benchmarks"]) or "none"
    out.append(f'<p class="meta">Benchmark{"s" if len(header["benchmarks"]) != 1 else ""}: <b>{e(benches)}</b>. '
               f"{header['n_runs']} runs reported, {header['n_skipped']} skipped. "
               f"Baseline of the exploratory comparisons: <b>{e(header['baseline'])}</b>; "
               f"{header.get('n_primary', 0)} primary comparisons declared in advance.</p>")
    if header.get("power"):
        out.append(f'<p class="meta"><b>Power.</b> {e(header["power"])}</p>')
    if header["variants"]:
        out.append('<ul class="meta">')
        for bench, name, seeds in header["variants"]:
            seed_text = ", ".join(str(s) for s in seeds)
            out.append(f"<li>{e(bench)} / <b>{e(name)}</b>: seed{'s' if len(seeds) != 1 else ''} {e(seed_text)}</li>")
        out.append("</ul>")
    if header.get("command"):
        out.append(f"<p class=\"meta\">Command:</p><pre>{e(header['command'])}</pre>")
    for title, items in sections:
        out.append(f"<h2>{e(title)}</h2>")
        for item in items:
            if isinstance(item, Table):
                out.append(f'<div class="scroll">{item.html()}</div>')
            else:
                out.append(f'<figure id="plot-{e(Path(item).stem)}">'
                           f'<img alt="{e(item)}" src="{data_uri(out_dir / item)}">'
                           f"<figcaption>{e(item)}: {e(plots[item])}</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
