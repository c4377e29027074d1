"""The report page: one self-contained HTML file drawn from the info of lrfind.report.info.

plotly.js is inlined ONCE in the head; each figure is a div without its own copy. Images are data
URIs. Every piece of user text (study and concept names, captions, prompts, fail reasons, paths)
goes through `esc` (html.escape); plotly's JSON escapes `<` itself. Written atomically.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from lrfind.atomic import write_text
from lrfind.report.figures import all_figures

SAMPLE_DISPLAY_PX = 128  # enlarge smaller samples to about this (whole multiples, pixelated)
XY_DISPLAY_PX = 768
FIGURES_META = "lrfind-figures"  # <meta> holding how many plots the page draws (browser test)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1em 2em;max-width:78em;
 color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#666} .banner{background:#fff3cd;border:1px solid #e0b000;padding:.6em 1em;border-radius:6px;
 font-weight:600} .warnings li{margin:.2em 0} .warn-failed{color:#a00} .warn-probe,.warn-clip{color:#8a5a00}
.card{border:1px solid #cfd8e3;background:#f7faff;border-radius:8px;padding:1em 1.4em}
.card table td{padding:.15em 1.2em .15em 0} .card td:first-child{color:#555}
pre{background:#1e1e1e;color:#eee;padding:.6em 1em;border-radius:6px;overflow-x:auto;white-space:pre-wrap}
table.kv td{padding:.1em 1.2em .1em 0;vertical-align:top} .note{color:#555;font-size:.92em}
.unreadable{display:inline-block;padding:1em;border:1px dashed #a00;color:#a00;font-size:.85em} .warn-image{color:#a00}
table.trials{border-collapse:collapse;font-size:.85em} table.trials th,table.trials td{border:1px solid #ddd;
 padding:.2em .5em;text-align:right;white-space:nowrap;max-width:28em;overflow:hidden;text-overflow:ellipsis}
table.left td,table.left th{text-align:left} table.trials th{background:#f0f0f0;cursor:pointer;position:sticky;top:0}
.scroll{max-height:32em;overflow:auto} .wide{overflow-x:auto} table.samples td,table.samples th{padding:.2em;vertical-align:top;
 font-size:.85em} table.samples th{max-width:16em;font-weight:normal;text-align:left}
table.samples img{display:block;height:auto;image-rendering:pixelated}
.xy img{max-width:100%;height:auto;image-rendering:pixelated} tr.suggested td{font-weight:bold} .figure{margin:1em 0}
"""

# Sortable table: a click on a header sorts by that column (numbers numerically), again reverses.
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('thead th').forEach(function(th, col){
    th.title = 'click to sort';
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
      function key(row){ var t = row.cells[col].textContent.trim(), n = parseFloat(t);
        return t === '' ? null : (isNaN(n) || !/^[-+.\\d]/.test(t) ? t : n); }
      rows.sort(function(a, b){ var x = key(a), y = key(b);
        if (x === null) return 1; if (y === null) return -1;
        if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * dir;
        return (typeof x === 'number' ? -1 : 1) * dir; });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def _display_size(image: dict, at_least: int) -> str:
    """width/height attributes: small images (the tiny model's 64 px samples) shown enlarged."""
    scale = max(1, at_least // max(image["width"], image["height"], 1))
    return f'width="{image["width"] * scale}" height="{image["height"] * scale}"'


def _kv_table(rows, css: str = "kv") -> str:
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="{css}">{body}</table>'


def _figure_html(name: str, figure) -> str:
    div = figure.to_html(include_plotlyjs=False, full_html=False, div_id=f"fig-{name}",
                         config={"displaylogo": False, "responsive": True})
    return f'<div class="figure" data-figure="{esc(name)}">{div}</div>'


def _header(info: dict) -> str:
    status = info["status"]
    parts = [f"<h1>{esc(info['title'])}</h1>",
             f'<p class="meta">{esc(status["text"])} · storage {esc(status["storage"])} · '
             f'generated {esc(status["generated_at"])}</p>']
    if status["partial"]:
        why = ("the study is still running" if status["running"]
               else "the study has not finished (no recommendation.json)")
        parts.append(f'<p class="banner" id="partial-banner">Partial report: {esc(why)}. '
                     "Run <code>lrfind report</code> again later for the final one.</p>")
    return "\n".join(parts)


def _warnings(warnings: list[dict]) -> str:
    if not warnings:
        return ""
    items = "".join(f'<li class="warn-{esc(w["kind"])}">{esc(w["text"])}</li>' for w in warnings)
    return f'<h2 id="warnings">Warnings</h2><ul class="warnings">{items}</ul>'


def _card(rec: dict) -> str:
    commands = rec["commands"]
    run_next = (
        "<p>Train the final LoRA with lrfind:</p>"
        f"<pre><code>{esc(commands['train'])}</code></pre>"
        "<p>Or with kohya sd-scripts: write its config files, then run its trainer from its folder:</p>"
        f"<pre><code>{esc(commands['export'])}\n{esc(commands['accelerate'])}</code></pre>")
    if not rec["available"]:
        return f'<h2 id="recommendation">Recommendation</h2><div class="card"><p>{esc(rec["reason"])}</p></div>'
    title = "Best so far (provisional)" if rec["provisional"] else "Recommendation"
    top = ", ".join(f"trial {t['trial']}: {t['value']:.4g}" for t in rec["top"] if t["value"] is not None)
    value = f"{rec['value']:.4g}" if rec["value"] is not None else "—"
    return (
        f'<h2 id="recommendation">{esc(title)}</h2><div class="card">'
        f"<p><b>From trial {esc(rec['trial_number'])}</b> (objective {esc(value)}), "
        f"confidence <b>{esc(rec['confidence'])}</b>.</p>"
        f"{_kv_table(rec['settings'])}"
        f"<p><b>Step math:</b> {esc(rec['steps_math'])}</p>"
        f"<p class=\"note\">{esc(rec['summary'])}</p>"
        + (f"<p class=\"note\">Top trials: {esc(top)}.</p>" if top else "")
        + run_next + "</div>")


def _section(anchor: str, title: str, caption: str, figure_html: str = "", extra: str = "") -> str:
    cap = f'<p class="note">{esc(caption)}</p>' if caption else ""
    return f'<h2 id="{anchor}">{esc(title)}</h2>{cap}{figure_html}{extra}'


def _probe(info: dict, figures: dict) -> str:
    if not info["available"]:
        return _section("probe", "Probe (d*lr)", info["reason"])
    body = _kv_table(info["rows"]) + f"<p>{esc(info['advice'])}</p>"
    for key in ("probe", "range_test"):
        body += figures.get(key, "")
    if info["range_test"]:
        body += f"<p class=\"note\">Range test: {esc(info['range_test']['advice'])}</p>"
    return _section("probe", "Probe (d*lr)", "", extra=body)


def _samples(info: dict) -> str:
    if not info["available"]:
        return _section("samples", "Samples", "no trial has saved samples yet")
    head = "".join(f"<th>{esc(p)}</th>" for p in info["prompts"])
    rows = []
    for row in info["rows"]:
        value = f"{row['value']:.4g}" if row["value"] is not None else "—"
        label = f"trial {row['trial']}<br>{esc(row['state'].lower())}<br>{esc(value)}"
        cells = "".join(_sample_cell(p, cell) for p, cell in zip(info["prompts"], row["cells"]))
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    caption = (f"Rows: trials, best first ({info['shown']} of {info['trials_with_samples']} with samples); "
               "columns: validation prompts (same seeds in every trial).")
    table = f'<div class="wide"><table class="samples"><tr><th></th>{head}</tr>{"".join(rows)}</table></div>'
    return _section("samples", "Samples", caption, extra=table)


def _unreadable(cell: dict) -> str:
    """The placeholder of an image the report could not read (the warnings name it too)."""
    return f'<span class="unreadable" title="{esc(cell["file"])}">unreadable image<br>{esc(Path(cell["file"]).name)}</span>'


def _sample_cell(prompt: str, cell) -> str:
    if not cell:
        return "<td></td>"
    if cell["uri"] is None:
        return f"<td>{_unreadable(cell)}</td>"
    return f'<td><img src="{cell["uri"]}" {_display_size(cell, SAMPLE_DISPLAY_PX)} alt="{esc(prompt)}" title="{esc(prompt)}"></td>'


def _xy_grid(info: dict) -> str:
    if not info["available"]:
        return ""
    suggested = ""
    if info["suggested_epoch"] is not None:
        suggested = f"<p><b>Suggested epoch: {esc(info['suggested_epoch'])}</b> {esc(info['reason'] or '')}</p>"
    images = "".join(f'<figure class="xy"><figcaption>{esc(g["title"])}</figcaption>'
                     + (f'<img src="{g["uri"]}" {_display_size(g, XY_DISPLAY_PX)} alt="X/Y grid">' if g["uri"]
                        else _unreadable(g)) + "</figure>"
                     for g in info["grids"])
    return _section("xy-grid", "Final run: X/Y grid", "rows: saved epochs; columns: LoRA weight",
                    extra=suggested + _epochs_table(info.get("epochs", [])) + images)


def _epochs_table(rows: list) -> str:
    """Saved epochs of the final run: validation loss, CLIP-I and file; the suggested one in bold."""
    if not rows:
        return ""

    def number(value) -> str:
        return "" if value is None else f"{value:.5g}"

    cells = "".join(
        f'<tr{" class=suggested" if r["suggested"] else ""}><td>{esc(r["epoch"])}</td>'
        f'<td>{esc(number(r["val_loss"]))}</td><td>{esc(number(r["clip_i"]))}</td><td>{esc(r["file"])}</td></tr>'
        for r in rows)
    return (f'<table class="kv epochs"><tr><th>epoch</th><th>validation loss</th><th>CLIP-I</th>'
            f'<th>LoRA file</th></tr>{cells}</table>')


def _trials_table(frame) -> str:
    table = frame.to_html(index=False, escape=True, na_rep="", classes="trials sortable", border=0,
                          float_format=lambda v: f"{v:.4g}", table_id="trials-table")
    return _section("trials", "Trials", "Click a column header to sort; scroll sideways for every column.",
                    extra=f'<div class="scroll">{table}</div>')


def _environment(info: dict) -> str:
    dataset = ""
    if info["dataset"]:
        rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in info["dataset"])
        dataset = (f"<h3>Dataset {esc(info['dataset_name'] or '')}</h3><p>{esc(info['dataset_images'])} training "
                   "images</p><table class=\"trials left\"><tr><th>folder</th>"
                   f"<th>images</th><th>repeats</th><th>buckets (w×h: images)</th></tr>{rows}</table>")
    return _section("environment", "Environment", "", extra=(
        _kv_table(info["study"]) + dataset + "<h3>Where the study ran</h3>"
        + _kv_table(info["study_environment"]) + "<h3>This report</h3>" + _kv_table(info["report_environment"])))


def _pruning_caption(info: dict) -> str:
    pruned = info["pruned"]
    if not pruned["trials"]:
        return "No trial was pruned (yet)."
    share = f"{100 * info['saved_fraction']:.0f} %"
    return (f"Pruning stopped {pruned['trials']} trial(s) after {pruned['steps_done']} of their "
            f"{pruned['steps_planned']} planned steps: {info['steps_saved']} steps saved, {share} of the "
            f"{info['steps_planned_total']} steps all finished trials planned"
            + (f" (pruned trials ran {pruned['seconds']:.0f} s)." if pruned["seconds"] else "."))


def _dim_alpha_caption(info: dict) -> str:
    if not info["available"]:
        return info["reason"]
    if info["kind"] == "contour":
        return "Circles: trials. Colour: the best objective per (dim, alpha) tried, interpolated between them."
    return "Too few distinct (dim, alpha) pairs for a contour yet: the objective against each."


def _plot_sections(info: dict, figures: dict) -> list[str]:
    importance = info["importance"]
    return [
        _section("history", "Optimisation history", "Each completed trial's objective; red: the best so far.",
                 figures.get("history", "")),
        _section("importance", "Parameter importances",
                 "" if importance["available"] else importance["reason"], figures.get("importance", "")),
        _section("parallel", "Parallel coordinates",
                 "" if info["parallel"]["available"] else info["parallel"]["reason"], figures.get("parallel", "")),
        _section("dim-alpha", "network_dim × network_alpha", _dim_alpha_caption(info["dim_alpha"]),
                 figures.get("dim_alpha", "")),
        _section("intermediate", "Intermediate values and pruning", _pruning_caption(info["intermediate"]),
                 figures.get("intermediate", "")),
        _section("pareto", "Pareto front: validation loss vs CLIP",
                 "Red: trials no other trial beats on both." if info["pareto"]["available"]
                 else info["pareto"]["reason"],
                 figures.get("pareto", "")),
    ]


def render_page(info: dict) -> tuple[str, int]:
    """The whole page, and how many plotly figures it draws."""
    import plotly.offline

    figures = {name: _figure_html(name, fig) for name, fig in all_figures(info).items() if fig is not None}
    body = [_header(info), _warnings(info["warnings"]), _card(info["recommendation"]),
            _probe(info["probe"], figures), *_plot_sections(info, figures), _samples(info["samples"]),
            _xy_grid(info["xy_grid"]), _trials_table(info["trials"]), _environment(info["environment"])]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="{FIGURES_META}" content="{len(figures)}">'
        f"<title>{esc(info['title'])}</title><style>{CSS}</style>\n"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>\n</head><body>\n'
        + "\n".join(part for part in body if part)
        + f"\n<script>{SORT_JS}</script>\n</body></html>\n"
    )
    return page, len(figures)


def write_report(path: str | os.PathLike, info: dict) -> Path:
    """Render and write the page atomically; returns its path."""
    page, _ = render_page(info)
    write_text(path, page)
    return Path(path)
