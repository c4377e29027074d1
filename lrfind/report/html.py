"""The report page's frame: head, CSS, the order of the sections, the sortable table's script.

One self-contained HTML file drawn from lrfind.report.info.gather_info; each section's fragment
(and its figure) comes from its own module in lrfind.report.sections. plotly.js is inlined ONCE in
the head; each figure is a div without its own copy. Images are data URIs. Every piece of user
text (study and concept names, captions, prompts, fail reasons, paths) goes through `esc`
(html.escape); plotly's JSON escapes `<` itself. Written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

from lrfind.atomic import write_text
from lrfind.report.info import ReportInfo
from lrfind.report.sections.common import Fragment, esc
from lrfind.report.sections.dim_alpha import dim_alpha_html
from lrfind.report.sections.environment import environment_html
from lrfind.report.sections.history import history_html
from lrfind.report.sections.importance import importance_html
from lrfind.report.sections.epoch_curves import epoch_curves_html, final_curves_html
from lrfind.report.sections.intermediate import intermediate_html
from lrfind.report.sections.parallel import parallel_html
from lrfind.report.sections.pareto import pareto_html
from lrfind.report.sections.probe import probe_html
from lrfind.report.sections.recommendation import recommendation_html
from lrfind.report.sections.samples import samples_html
from lrfind.report.sections.status import status_html
from lrfind.report.sections.trials_table import trials_table_html
from lrfind.report.sections.warnings import warnings_html
from lrfind.report.sections.xy_grid import xy_grid_html

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


def _sections(info: ReportInfo) -> list[Fragment]:
    """The page's sections, in order (an empty fragment: a section with nothing to show)."""
    return [status_html(info.title, info.status), warnings_html(info.warnings),
            recommendation_html(info.recommendation), epoch_curves_html(info.epoch_curves),
            final_curves_html(info.final_curves), probe_html(info.probe),
            history_html(info.history),
            importance_html(info.importance), parallel_html(info.parallel), dim_alpha_html(info.dim_alpha),
            intermediate_html(info.intermediate), pareto_html(info.pareto), samples_html(info.samples),
            xy_grid_html(info.xy_grid), trials_table_html(info.trials), environment_html(info.environment)]


def render_page(info: ReportInfo) -> tuple[str, int]:
    """The whole page, and how many plotly figures it draws."""
    import plotly.offline

    sections = _sections(info)
    figures = sum(part.figures for part in sections)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="{FIGURES_META}" content="{figures}">'
        f"<title>{esc(info.title)}</title><style>{CSS}</style>\n"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>\n</head><body>\n'
        + "\n".join(part.html for part in sections if part.html)
        + f"\n<script>{SORT_JS}</script>\n</body></html>\n"
    )
    return page, figures


def write_report(path: str | os.PathLike, info: ReportInfo) -> Path:
    """Render and write the page atomically; returns its path."""
    page, _ = render_page(info)
    write_text(path, page)
    return Path(path)
