"""`lrfind demo` end to end (probe -> study -> report -> final run -> kohya export), in-process."""

from __future__ import annotations

import json
import re
import tomllib


def test_demo_runs_every_step_and_says_where_outputs_are(tmp_path, capsys):
    from lrfind.cli import main

    rc = main(["demo", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    match = re.search(r"lrfind demo finished in (\d+) s \(probe \d+ s, study \d+ s, report \d+ s, final run", out)
    assert match, out
    with capsys.disabled():  # the demo's time in CI's log, even under pytest -q
        print(f"\n[lrfind demo took {match.group(1)} s]", flush=True)
    study = tmp_path / "studies" / "demo"
    for path in (study / "probe.json", study / "probe.html", study / "recommendation.json",
                 tmp_path / "studies" / "demo.db", study / "final" / "demo.safetensors",
                 study / "final" / "demo_xy_grid.png", study / "final" / "demo_final.json",
                 study / "kohya" / "kohya_config.toml", tmp_path / "reports" / "demo.html"):
        assert path.is_file(), path
        assert str(path.resolve()) in out, path  # the summary says where each output is
    config = tomllib.loads((study / "kohya" / "kohya_config.toml").read_text())
    rec = json.loads((study / "recommendation.json").read_text())
    assert config["additional_network_arguments"]["network_dim"] == rec["network_dim"]
    page = (tmp_path / "reports" / "demo.html").read_text()
    assert 'id="xy-grid"' in page and "Suggested epoch" in page and "uncalibrated" in page.lower()
    # a second run resumes the finished study instead of starting over: no new trial
    import optuna

    url = f"sqlite:///{tmp_path / 'studies' / 'demo.db'}"
    before = len(optuna.load_study(study_name="demo", storage=url).trials)
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert "reusing" in capsys.readouterr().out
    assert len(optuna.load_study(study_name="demo", storage=url).trials) == before
