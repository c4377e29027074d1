"""`lrfind demo` end to end (probe -> study -> report -> final run -> kohya export), in-process."""

from __future__ import annotations

import json
import re
import tomllib

import pytest


def test_demo_runs_every_step_and_says_where_outputs_are(tmp_path, capsys):
    from lrfind.cli import main

    rc = main(["demo", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    match = re.search(r"lrfind demo finished in (\d+) s \(probe \d+ s, study \d+ s, report \d+ s, final run", out)
    assert match, out
    # the study's warnings reach the user: the cup folder's 2 photos are too few to hold one out
    assert "[demo] warning: concept folder 5_lrfcup cup has 2 image(s)" in out, out
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


# What `lrfind demo --model tiny --trials 1 --probe-steps 40` made on main at 89919a1 (before the
# typed artifacts and lrfind.api), on this project's 2-core CPU machine: the test below ran there
# (its code, with main's lrfind) and printed these values; the api branch made the same. Re-pinned
# at 414d0e7 (2026-12-02), whose only change to these outputs is the refitted Prodigy factor
# (lrfind/optimizers/prodigy.py, /2.46 -> /0.71): the plateau is the same bits, every lr x3.46.
# One trial, so the recommendation is that trial's (the probe's own point, lrfind.study.probe_point);
# the sampler's seed pinned, since it otherwise mixes in the process id and the trial's repeats would be drawn differently each run.
# 40 probe steps: the fewest the demo's Prodigy probe needs on the tiny model to report an lr (at 8
# it is still at d0 and the study refuses to start).
PINNED_PROBE = {'status': 'still_rising',
                'steps': 40,
                'plateau_value': 1.1026502546404389e-05,
                'plateau_step': None,
                'confidence': 0.1,
                'unet_lr': 1.5530285276625902e-05,
                'lion_lr': 5.176761758875301e-06,
                'text_encoder_lr': 3.8825713191564755e-06}
# Re-pinned on the heldout branch (issue 17, 2026-12-02): the study validates on a held-out image
# (the cat folder's 6 give 1; the cup's 2 are too few), its trials train on the other 7, and the
# epoch sweep keeps 1 epoch: 2 and 3 drift further from the base model for a 0.03 % lower
# held-out loss (EPOCH_MIN_GAIN is 0.5 %). The final run trains on all 8 images for 1 epoch.
# Re-pinned on the objective branch (issue 17 item 3, 2026-12-02): only `value` moved (0.77906 ->
# 0.77884). CLIP-I now compares the samples with the one held-out image instead of 8 training
# images (tiny random CLIP: a different mean cosine), and the objective adds 1 x drift. Every
# other pinned output is unchanged.
# Re-pinned on the probeheld branch (issue 17 item 6, 2026-12-02): the demo's probe now holds out
# the study's image (cat folder's 01.jpg, same --seed and split) and trains on the other 7, so its
# d*lr plateau is 1.0593e-05 -> 1.1027e-05 and every lr x1.041 (unet_lr 1.4920e-05 -> 1.5530e-05).
# The study's one trial (the probe's point) trains at that lr: its value moved by -7e-4 % and its
# epoch losses and the final run's loss by under 2e-3 %, within the tolerance but re-pinned exactly;
# epochs, repeats and steps are unchanged.
PINNED_RECOMMENDATION = {'trial_number': 0,
                         'value': 0.7788373330236055,
                         'network_dim': 8,
                         'network_alpha': 8.0,
                         'epochs': 1,
                         'repeats': 1,
                         'optimizer': 'AdamW',
                         'unet_lr': 1.5530285276625902e-05,
                         'total_steps': 8,
                         'trial_steps': 7,
                         'epoch_losses': {'1': 1.1761349588632584,
                                          '2': 1.1759611815214157,
                                          '3': 1.1757799685001373}}
PINNED_FINAL = {'suggested_epoch': 1,
                'suggested_file': 'demo.safetensors',
                'val_losses': [1.1674399934709072]}


def _close(actual, expected, rel=1e-4):
    if isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(_close(actual[k], v, rel) for k, v in expected.items())
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(_close(a, e, rel) for a, e in zip(actual, expected))
    if isinstance(expected, float):
        return actual == pytest.approx(expected, rel=rel)
    return actual == expected


def test_demo_outputs_are_those_main_made_before_the_refactor(tmp_path, monkeypatch, capsys):
    from lrfind.cli import main

    monkeypatch.setattr("lrfind.study.runner.sampler_seed", lambda seed: 12345)
    rc = main(["demo", "--model", "tiny", "--trials", "1", "--probe-steps", "40", "--out", str(tmp_path)])
    assert rc == 0, capsys.readouterr().out
    study = tmp_path / "studies" / "demo"
    probe = json.loads((study / "probe.json").read_text())
    rec = json.loads((study / "recommendation.json").read_text())
    final = json.loads((study / "final" / "demo_final.json").read_text())
    assert _close({k: probe.get(k) for k in PINNED_PROBE}, PINNED_PROBE), probe
    assert _close({k: rec[k] for k in PINNED_RECOMMENDATION}, PINNED_RECOMMENDATION), rec
    assert _close({"suggested_epoch": final["suggested_epoch"], "suggested_file": final["suggested_file"],
                   "val_losses": [e["val_loss"] for e in final["epochs"]]}, PINNED_FINAL), final

