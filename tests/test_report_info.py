"""`lrfind report`: each section's info data from a synthetic study (tests/report_study.py), the
partial case, escaping of user text in the page, and the command's one-line errors."""

from __future__ import annotations

import argparse
import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from lrfind.errors import ConfigError
from lrfind.report.data import load_study_data
from lrfind.report.info import gather_info
from lrfind.report.sections.dim_alpha import _get_dim_alpha_info
from lrfind.report.sections.environment import _get_environment_info
from lrfind.report.sections.history import _get_history_info
from lrfind.report.sections.importance import _get_importance_info
from lrfind.report.sections.intermediate import PrunedTotals, _get_intermediate_info
from lrfind.report.sections.parallel import _get_parallel_info
from lrfind.report.sections.pareto import _get_pareto_info, pareto_figure, pareto_front
from lrfind.report.sections.probe import _get_probe_info
from lrfind.report.sections.recommendation import TopTrial, _get_recommendation_info
from lrfind.report.sections.samples import _get_sample_grid_info
from lrfind.report.sections.trials_table import _get_trials_table_info
from lrfind.report.sections.warnings import ReportWarning, _get_warnings_info
from lrfind.report.sections.xy_grid import _get_xy_grid_info
from report_study import EVIL, PROMPTS, build_study

# objective = ratio - 0.25 clip_i - 0.25 clip_t, clip_t = 0.25 + 0.01 trial (see report_study.COMPLETE)
EXPECTED_VALUES = [0.755, 0.68, 0.6525, 0.7075, 0.6825, 0.6975]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    url, study_dir = build_study(tmp_path_factory.mktemp("finished"))
    return load_study_data("cats", url, study_dir)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    url, study_dir = build_study(tmp_path_factory.mktemp("running"), running=True, recommendation=False)
    return load_study_data("cats", url, study_dir)


def _small_study(root: Path, completes: list[dict]):
    """A study with no files and only the given complete trials' user attributes (no probe, no CLIP)."""
    import optuna

    url = f"sqlite:///{(root / 'small.db').as_posix()}"
    study = optuna.create_study(study_name="small", storage=url)
    dist = {"network_dim": optuna.distributions.CategoricalDistribution([4, 8])}
    for i, attrs in enumerate(completes):
        study.add_trial(optuna.trial.create_trial(params={"network_dim": [4, 8][i % 2]}, distributions=dist,
                                                  value=1.0 + i, user_attrs=attrs))
    (root / "small").mkdir(exist_ok=True)
    return load_study_data("small", url, root / "small")


def test_recommendation_card_from_recommendation_json(finished):
    info = _get_recommendation_info(finished)
    assert info.available and not info.provisional
    assert info.trial_number == 2 and info.value == pytest.approx(min(EXPECTED_VALUES))
    settings = dict(info.settings)
    assert settings["network_dim"] == "8" and settings["network_alpha"] == "4" and settings["epochs"] == "3"
    assert settings["optimizer"] == "Lion" and settings["total steps"] == "42"
    assert info.steps_math.endswith("× 3 epochs / batch 1 = 42 steps")
    assert [t.trial for t in info.top] == [2, 1, 4]
    assert info.top[0] == TopTrial(trial=2, value=pytest.approx(min(EXPECTED_VALUES)))
    commands = info.commands
    assert commands.train == "lrfind train '/data/my cats' --from-study cats"
    kohya = (finished.study_dir / "kohya").resolve()
    assert commands.export == f"lrfind export-kohya cats --out {kohya}"
    assert commands.accelerate == ("accelerate launch --num_cpu_threads_per_process 1 train_network.py "
                                      f"--config_file {kohya}/kohya_config.toml "
                                      f"--dataset_config {kohya}/kohya_dataset.toml")


def test_partial_study_gets_a_provisional_card_and_warnings(running):
    assert running.running and running.partial and running.recommendation is None
    card = _get_recommendation_info(running)
    assert card.available and card.provisional and card.trial_number == 2
    kinds = [w.kind for w in _get_warnings_info(running)]
    assert kinds.count("partial") == 2
    assert gather_info(running).status.states == {"COMPLETE": 6, "PRUNED": 2, "FAIL": 1, "RUNNING": 1}


def test_probe_info_has_curve_plateau_and_range_test(finished):
    info = _get_probe_info(finished)
    assert info.status == "converged"
    plot = info.plot
    assert len(plot["dlr"]["steps"]) == 80 and plot["plateau"] is not None
    assert plot["plateau"]["value"] == pytest.approx(0.02, rel=0.05)
    assert 20 <= plot["plateau"]["start_step"] <= 35 and plot["plateau"]["end_step"] == 80
    assert len(info.range_test.lrs) == 25 and info.range_test.suggested_lr == 0.015
    assert dict(info.rows)["unet_lr"] == "0.02"


def test_probe_info_shows_the_held_out_loss_and_the_studys_note_on_it(finished):
    import dataclasses

    from lrfind.probe.held_out import PROBE_SPLIT_NOTE_ATTR

    assert _get_probe_info(finished).held_out is None and _get_probe_info(finished).split_note == ""  # version 1
    held_out = {"source": "split", "images": ["10_cat/01.jpg"], "fraction": 0.2, "seed": 42, "baseline_loss": 0.5,
                "losses": [[40, 0.45], [80, 0.44]], "loss_at_end": 0.44}
    data = dataclasses.replace(finished, probe={**finished.probe, "held_out": held_out},
                               user_attrs={**finished.user_attrs, PROBE_SPLIT_NOTE_ATTR: "probe.json holds out other"})
    info = _get_probe_info(data)
    assert info.held_out["text"].startswith("held-out loss on 1 image(s)") and "0.44 (-12 %)" in info.held_out["text"]
    assert info.plot["held_out"]["steps"] == [0, 40, 80] and info.split_note == "probe.json holds out other"


def test_history_best_so_far(finished):
    info = _get_history_info(finished)
    assert info.numbers == [0, 1, 2, 3, 4, 5]
    assert info.values[0] == pytest.approx(EXPECTED_VALUES)
    assert info.best_so_far == pytest.approx([0.755, 0.68, 0.6525, 0.6525, 0.6525, 0.6525])


def test_importances_need_two_completed_trials(finished, tmp_path):
    info = _get_importance_info(finished)
    assert info.available and info.method == "PED-ANOVA" and info.objective == "objective"
    assert sum(info.importances.values()) == pytest.approx(1.0)
    assert set(info.importances) == {"network_dim", "network_alpha_fraction", "epochs", "repeats",
                                        "lr_multiplier", "optimizer", "lr_scheduler"}
    one = _get_importance_info(_small_study(tmp_path, [{}]))
    assert not one.available and "at least 2 completed trials" in one.reason and one.importances == {}


def test_parallel_coordinates_axes(finished):
    info = _get_parallel_info(finished)
    by_name = {d.name: d for d in info.dimensions}
    assert info.dimensions[-1].name == "objective" and info.numbers == [0, 1, 2, 3, 4, 5]
    assert by_name["optimizer"].labels == ["AdamW", "Lion"]
    assert by_name["optimizer"].values == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert by_name["network_dim"].labels is None and by_name["network_dim"].values[:2] == [4.0, 8.0]


def test_parallel_coordinates_give_swept_trials_their_best_epoch(tmp_path):
    import optuna

    url = f"sqlite:///{(tmp_path / 'mixed.db').as_posix()}"
    study = optuna.create_study(study_name="mixed", storage=url)
    dims = {"network_dim": optuna.distributions.CategoricalDistribution([4, 8])}
    epochs = {"epochs": optuna.distributions.IntDistribution(1, 3)}
    study.add_trial(optuna.trial.create_trial(params={"network_dim": 4}, distributions=dims, value=1.0,
                                              user_attrs={"best_epoch": 2}))  # swept: no `epochs` param
    study.add_trial(optuna.trial.create_trial(params={"network_dim": 8, "epochs": 3},
                                              distributions={**dims, **epochs}, value=2.0))
    (tmp_path / "mixed").mkdir()
    data = load_study_data("mixed", url, tmp_path / "mixed")
    info = _get_parallel_info(data)
    assert {d.name: d.values for d in info.dimensions}["epochs"] == [2.0, 3.0]
    assert list(_get_trials_table_info(data)["epochs"]) == [2, 3]  # the table fills it in too


def test_dim_alpha_grid_keeps_the_best_value_per_cell(finished):
    info = _get_dim_alpha_info(finished)
    assert info.kind == "contour"
    grid = info.grid
    assert grid.dims == [4, 8] and grid.alphas == [2.0, 4.0, 8.0]
    # (alpha 4, dim 8): trials 2 (0.6525) and 4 (0.6825); (alpha 8, dim 4) was never tried
    assert grid.values[1][1] == pytest.approx(0.6525)
    assert grid.values[2][0] is None
    assert len(info.points) == 6 and {p.trial for p in info.points} == {0, 1, 2, 3, 4, 5}


def test_intermediate_values_and_compute_pruning_saved(finished):
    info = _get_intermediate_info(finished)
    assert len(info.series) == 8
    assert info.pruned == PrunedTotals(trials=2, steps_done=20, steps_planned=60 + 20,
                                       seconds=info.pruned.seconds)
    assert info.steps_saved == 60
    complete_steps = sum(10 * row_epochs * row_repeats for row_epochs, row_repeats in
                         [(1, 1), (2, 2), (3, 2), (2, 1), (2, 1), (3, 2)])
    assert info.steps_planned_total == complete_steps + 80
    assert info.saved_fraction == pytest.approx(60 / (complete_steps + 80))


@pytest.mark.parametrize("points, front", [
    ([(0.97, 0.61), (0.91, 0.66), (0.88, 0.64), (0.95, 0.69), (0.90, 0.58)], [2, 1, 3]),
    ([(1.0, 0.5), (1.0, 0.5)], [0, 1]),  # equal points dominate neither
    ([(1.0, 0.5), (1.0, 0.6)], [1]),  # same loss, better CLIP
    ([(0.5, 0.1)], [0]),
])
def test_pareto_front(points, front):
    assert pareto_front(points) == front


@pytest.mark.parametrize("points, maximize, front", [
    ([(1.0, 0.5, 0.4), (0.9, 0.6, 0.1), (0.9, 0.6, 0.3)], (False, True, True), [2, 0]),  # 2 beats 1
    ([(0.8, 0.05), (0.9, 0.01), (0.95, 0.02)], (False, False), [0, 1]),  # both minimised (loss, drift)
])
def test_pareto_front_in_more_dimensions_and_directions(points, maximize, front):
    assert pareto_front(points, maximize) == front


def test_pareto_info_and_its_absence_without_clip(finished, tmp_path):
    info = _get_pareto_info(finished)
    assert info.x_name == "val_loss_ratio" and info.y_names == ["clip_i", "clip_t"]  # no drift in this study
    assert info.panels[0].front_trials == [2, 1, 3]
    loss_only = _small_study(tmp_path, [{"val_loss": 0.1, "clip_i": None}, {"val_loss": 0.2, "clip_i": None}])
    assert not _get_pareto_info(loss_only).available


def test_pareto_info_has_a_drift_panel_and_the_front_of_all_terms(tmp_path):
    # trial: (val_loss_ratio, drift, clip_i); trial 3 is beaten on each pair (by 1 on drift, by 4 on
    # CLIP-I) but by no trial on all three; 5 is beaten by 0 on all three; 6 has no drift
    rows = [(0.8, 0.05, 0.5), (0.9, 0.01, 0.4), (0.85, 0.03, 0.6), (0.95, 0.02, 0.7), (0.9, 0.06, 0.75),
            (1.0, 0.07, 0.3), (0.7, None, 0.2)]
    data = _small_study(tmp_path, [{"val_loss": r[0] / 5, "val_loss_ratio": r[0], "drift": r[1], "clip_i": r[2]}
                                   for r in rows])
    info = _get_pareto_info(data)
    assert info.available and info.x_name == "val_loss_ratio" and info.y_names == ["drift", "clip_i"]
    drift, clip = info.panels
    assert not drift.y_maximize and clip.y_maximize
    assert drift.trials == [0, 1, 2, 3, 4, 5] and drift.y == [0.05, 0.01, 0.03, 0.02, 0.06, 0.07]
    assert drift.front_trials == [0, 2, 1] and drift.front_y == [0.05, 0.03, 0.01]  # lower drift is better
    assert clip.trials == [0, 1, 2, 3, 4, 5, 6] and clip.front_trials == [6, 0, 2, 4]
    assert info.front_trials == [0, 2, 1, 4, 3]  # by loss; 6 lacks a drift, so it is on no front of all terms
    figure = pareto_figure(info)
    assert len(figure.data) == 4  # trials and the pair's front, per panel
    assert list(figure.data[0].marker.color).count("#d62728") == 5
    (tmp_path / "drift").mkdir()
    only_drift = _small_study(tmp_path / "drift", [{"val_loss": 0.1, "drift": 0.01}, {"val_loss": 0.2, "drift": 0.0}])
    assert _get_pareto_info(only_drift).y_names == ["drift"]  # --score loss: loss against drift still


def test_trials_table_shows_dino_and_its_term_only_in_a_study_with_dino(tmp_path):
    terms = {"loss": 0.9, "drift": 0.01, "clip_i": -0.3, "clip_t": -0.1}
    with_dino = _small_study(tmp_path, [{"val_loss": 0.1, "dino": 0.62, "objective_terms": {**terms, "dino": -0.31}}])
    frame = _get_trials_table_info(with_dino)
    assert frame.loc[0, "dino"] == 0.62 and frame.loc[0, "term dino"] == -0.31
    columns = list(frame.columns)
    order = [columns.index(name) for name in ("dino", "term loss", "term dino", "network_dim")]
    assert order == sorted(order)  # up front, the term after the others
    (tmp_path / "plain").mkdir()
    plain = _get_trials_table_info(_small_study(tmp_path / "plain", [{"val_loss": 0.1, "objective_terms": terms}]))
    assert "term dino" not in plain.columns and "dino" not in plain.columns


def test_trials_table_is_a_dataframe_without_nested_attributes(finished):
    frame = _get_trials_table_info(finished)
    assert len(frame) == 9
    assert {"number", "value", "state", "network_dim", "val_loss", "clip_i", "fail_reason"} <= set(frame.columns)
    assert not {"val_history", "train_values", "samples", "lrfind_worker"} & set(frame.columns)
    assert frame.loc[frame["number"] == 8, "state"].item() == "FAIL"


def test_sample_grid_rows_are_trials_best_first_with_png_data_uris(finished):
    info = _get_sample_grid_info(finished)
    assert info.prompts == list(PROMPTS)  # read from the PNGs' text chunks
    assert [r.trial for r in info.rows] == [2, 1, 4, 5, 3, 0]
    assert info.shown == info.trials_with_samples == 6
    uri = info.rows[0].cells[0].uri
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "PNG" and image.size == (64, 64)


def test_xy_grid_of_a_final_run(finished):
    info = _get_xy_grid_info(finished)
    assert info.available and len(info.grids) == 1 and info.suggested_epoch == 2
    assert info.grids[0].image.width == 256 and info.grids[0].image.height == 128
    assert [(r.epoch, r.suggested) for r in info.epochs] == [(1, False), (2, True), (3, False)]
    assert info.epochs[0].clip_i is None and info.epochs[1].val_loss == 0.88


def test_warnings_name_failed_trials_and_uncalibrated_clip(finished):
    warnings = _get_warnings_info(finished)
    failed = [w for w in warnings if w.kind == "failed"]
    assert failed == [ReportWarning("failed", f"trial 8 failed: the validation loss is nan {EVIL}", trial=8)]
    assert any(w.kind == "clip" for w in warnings)
    assert not any(w.kind in ("partial", "probe") for w in warnings)


def test_probe_not_converged_is_a_warning(finished, tmp_path):
    import dataclasses

    probe = dict(finished.probe, status="still_rising", advice="run more steps")
    warnings = _get_warnings_info(dataclasses.replace(finished, probe=probe))
    assert ReportWarning("probe", "probe not converged (still_rising): run more steps") in warnings


def test_environment(finished):
    info = _get_environment_info(finished)
    assert info.dataset_images == 8 and len(info.dataset) == 2
    assert dict(info.study)["model"] == "tiny"
    assert dict(info.study_environment)["torch"] == "2.13.0"
    assert set(dict(info.report_environment)) == {"lrfind", "optuna", "plotly", "pandas", "python"}


def test_user_text_is_escaped_and_plotly_inlined_once(finished, tmp_path):
    import plotly.offline

    from lrfind.report.html import render_page, write_report

    info = gather_info(finished)
    page, figures = render_page(info)
    assert figures == 9  # eight study figures and the final run's curves (its fixture ran one)
    assert "<script>alert(1)" not in page and "alert(1)</script>" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # prompt, reason, folder, dataset, ...
    assert page.count(plotly.offline.get_plotlyjs()[:500]) == 1
    assert page.count('class="figure"') == figures
    assert "partial-banner" not in page
    path = write_report(tmp_path / "out" / "r.html", info)
    assert path.read_text(encoding="utf-8") == page  # deterministic: the same info gives the same page


def test_partial_page_has_a_banner(running):
    from lrfind.report.html import render_page

    page, _ = render_page(gather_info(running))
    assert 'id="partial-banner"' in page and "still running" in page


def _run_cli(argv: list[str]) -> int:
    from lrfind.cli import report_cmd

    parser = argparse.ArgumentParser()
    report_cmd.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_the_report_and_prints_its_path(finished, tmp_path, capsys):
    url = f"sqlite:///{(finished.study_dir.parent / 'cats.db').as_posix()}"
    out = tmp_path / "reports" / "cats.html"
    assert _run_cli(["report", "cats", "--storage", url, "--study-dir", str(finished.study_dir),
                     "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_default_storage_is_beside_the_study_dir(finished, tmp_path):
    out = tmp_path / "r.html"
    assert _run_cli(["report", "cats", "--study-dir", str(finished.study_dir), "--out", str(out)]) == 0
    assert out.is_file()


def test_cli_unknown_study_lists_the_names(finished):
    url = f"sqlite:///{(finished.study_dir.parent / 'cats.db').as_posix()}"
    with pytest.raises(ConfigError, match=r"no study named 'dogs' .*studies there: cats\)") as err:
        _run_cli(["report", "dogs", "--storage", url])
    assert "\n" not in str(err.value)


def test_cli_missing_storage_is_one_line_and_creates_nothing(tmp_path):
    db = tmp_path / "nothing.db"
    with pytest.raises(ConfigError, match="does not exist; run `lrfind study DATASET --name nothing`") as err:
        _run_cli(["report", "nothing", "--storage", f"sqlite:///{db.as_posix()}"])
    assert "\n" not in str(err.value) and not db.exists()


def test_multi_objective_study_renders_with_named_objectives(tmp_path):
    import optuna

    from lrfind.report.html import render_page

    url = f"sqlite:///{(tmp_path / 'pareto.db').as_posix()}"
    study = optuna.create_study(study_name="pareto", storage=url, directions=["minimize", "maximize"])
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["loss_ratio", "clip_i"])
    dists = {"network_dim": optuna.distributions.CategoricalDistribution([4, 8, 16]),
             "network_alpha_fraction": optuna.distributions.FloatDistribution(0.25, 1.0, log=True)}
    for dim, fraction, ratio, clip in [(4, 0.5, 0.9, 0.6), (8, 1.0, 0.8, 0.5), (16, 0.25, 0.95, 0.7)]:
        study.add_trial(optuna.trial.create_trial(
            params={"network_dim": dim, "network_alpha_fraction": fraction}, distributions=dists,
            values=[ratio, clip], user_attrs={"val_loss_ratio": ratio, "clip_i": clip}))
    (tmp_path / "pareto").mkdir()
    data = load_study_data("pareto", url, tmp_path / "pareto")
    info = gather_info(data)
    assert info.history.objective_names == ["loss_ratio", "clip_i"]
    assert info.history.values[1] == [0.6, 0.5, 0.7] and info.history.best_so_far is None
    assert info.pareto.front_trials == [1, 0, 2]
    assert {"value loss_ratio", "value clip_i", "clip_i"} <= set(info.trials.columns)
    assert not info.recommendation.available  # no recommendation.json; none provisional either
    page, figures = render_page(info)
    assert figures >= 5 and "no recommendation yet" in page


@pytest.mark.parametrize("damage", ["truncated", "not_an_image", "empty"])
def test_a_corrupt_sample_or_grid_png_is_a_placeholder_and_a_warning(damage, tmp_path):
    from lrfind.report.html import render_page

    url, study_dir = build_study(tmp_path)
    data = load_study_data("cats", url, study_dir)
    sample = Path(_get_sample_grid_info(data).rows[0].cells[0].file)
    grid = data.xy_grids[0]
    for path in (sample, grid):
        raw = path.read_bytes()
        path.write_bytes({"truncated": raw[: len(raw) // 2], "not_an_image": b"<html>oops</html>",
                          "empty": b""}[damage])
    info = gather_info(data)
    page, _ = render_page(info)
    assert page.count('class="unreadable"') == 2 and "unreadable image<br>" + sample.name in page
    texts = [w.text for w in info.warnings if w.kind == "image"]
    assert len(texts) == 2 and str(sample) in texts[0] and str(grid) in texts[1]
    assert info.samples.rows[0].cells[0].uri is None and info.xy_grid.grids[0].image.uri is None
    assert info.samples.rows[0].cells[1].uri.startswith("data:image/png")  # the others still shown


def test_a_held_out_study_s_provisional_card_counts_steps_as_the_study_does(running):
    """The trials trained on the images the study did not hold out (trained_dataset_stats); the
    full run trains on every image (dataset_stats): the provisional card says both, as
    recommendation.json would."""
    import copy
    import dataclasses

    trained = copy.deepcopy(running.user_attrs["dataset_stats"])
    trained["concepts"][0]["images_per_bucket"] = [[[64, 64], 5]]  # one of the 6 cats held out
    held_out = dataclasses.replace(running, user_attrs={**running.user_attrs, "trained_dataset_stats": trained})
    card = _get_recommendation_info(held_out)
    assert card.available and card.provisional
    assert "held out" in card.steps_math and "trained on 7" in card.steps_math, card.steps_math
    assert "held out" not in _get_recommendation_info(running).steps_math
