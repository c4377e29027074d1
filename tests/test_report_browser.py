"""The report in a real browser: headless Chromium opens it from disk with the network cut off.

Checks: no JavaScript errors, no request leaves the file, every plot rendered (one
`.js-plotly-plot` with a drawn `.main-svg` per figure the page says it has), the trials table
sorts, the escaped `<script>` stays text. Saves a full-page screenshot under the test's tmp dir and
reports/test-artifacts/. Skips when Debian's chromium or the playwright package is missing
(`apt-get install -y chromium`, `pip install playwright`; never `playwright install`), except under
CI (CI set), where it fails: `.ci/run` installs both (scripts/install_test_services.sh).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from report_study import EVIL, build_study

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-swiftshader"]  # software WebGL for the parallel-coordinates plot


def _missing(reason: str):
    """Skip locally; under CI a missing browser is a failure, never a silent skip."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (CI is set: run `bash scripts/install_test_services.sh`)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sync_api():
    if not Path(CHROMIUM).is_file():
        _missing("chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        _missing("playwright is not installed (pip install -c <(echo torch==2.13.0) playwright; "
                 "never `playwright install`)")
    return sync_api


@pytest.fixture(scope="module")
def report_file(sync_api, tmp_path_factory):
    from lrfind.report.data import load_study_data
    from lrfind.report.html import render_page, write_report
    from lrfind.report.info import gather_info

    root = tmp_path_factory.mktemp("studies")
    url, study_dir = build_study(root, running=True)
    info = gather_info(load_study_data("cats", url, study_dir))
    _, figures = render_page(info)
    return write_report(root / "report.html", info), figures


def test_report_renders_offline_without_errors(sync_api, report_file, tmp_path):
    path, figures = report_file
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
        page = context.new_page()
        page.on("pageerror", lambda err: errors.append(f"pageerror: {err}"))
        page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("request", lambda req: None if req.url.startswith(("file:", "data:")) else requests.append(req.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {figures}", timeout=20000)
        page.wait_for_timeout(500)  # let the last plot finish drawing
        declared = int(page.get_attribute("meta[name=lrfind-figures]", "content"))
        plots = page.locator(".js-plotly-plot").count()
        drawn = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot'))"
                              ".filter(d => d.querySelector('.main-svg')).length")
        first_cells = _sorted_column(page)
        banner = page.locator("#partial-banner").inner_text()
        text = page.locator("body").inner_text()
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    assert errors == []
    assert requests == []
    assert declared == figures == plots == drawn
    assert figures >= 7  # probe, range test, history, importances, parallel, dim x alpha, intermediate, pareto
    assert first_cells == sorted(first_cells, reverse=True)
    assert "still running" in banner
    assert EVIL in text  # shown as text, and the page had no alert/error from it


def _sorted_column(page) -> list[float]:
    """Click the `number` header twice (ascending, then descending); the column's values after."""
    header = page.locator("#trials-table thead th", has_text="number").first
    header.click()
    header.click()
    cells = page.locator("#trials-table tbody tr td:first-child").all_inner_texts()
    return [float(c) for c in cells]
