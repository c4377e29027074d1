"""The report's sections, one module each, in Optuna's style: a frozen info dataclass, its pure
`_get_<section>_info(data)` (what the tests check), its plotly figure and its HTML fragment.

lrfind.report.info.gather_info builds every section's info in page order; lrfind.report.html
lays the fragments out in the page frame. Shared helpers (escaping, key/value tables, figure
divs, image cells) are in `common`; the completed trials and objective names the plot sections
share are in `objectives`.
"""
