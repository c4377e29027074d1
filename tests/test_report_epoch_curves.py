"""The report's per-epoch curves of the recommended trial and the diagnosis in the trials table
(issue 17, item 5): the section's data from a synthetic study, its figure, and the page."""

from __future__ import annotations

import json
from pathlib import Path

from lrfind.report.data import StudyData, load_study_data
from lrfind.report.sections.epoch_curves import (_get_epoch_curves_info, _get_final_curves_info, epoch_curves_figure,
                                                  final_curves_html)
from lrfind.report.sections.trials_table import _get_trials_table_info
from lrfind.study.diagnosis import diagnose_trial

BASE = 0.12
# training loss keeps falling; held-out loss is lowest at epoch 2 and rises from epoch 3
OVERFITTING = {"val_loss": 0.110, "val_loss_ratio": 0.110 / BASE, "best_epoch": 2, "drift": 0.006,
               "epoch_val_losses": {"1": 0.115, "2": 0.110, "3": 0.114, "4": 0.118},
               "epoch_train_losses": {"1": 0.105, "2": 0.098, "3": 0.090, "4": 0.082},
               "epoch_drifts": {"1": 0.004, "2": 0.006, "3": 0.009, "4": 0.013},
               "objective_terms": {"loss": 0.110 / BASE, "drift": 0.006, "clip_i": -0.2, "clip_t": -0.1}}
ONE_EPOCH = {"val_loss": 0.116, "val_loss_ratio": 0.116 / BASE, "drift": 0.002}


def _study(root: Path, trials: list[dict], recommended: int | None):
    import optuna

    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(root / 'curves.db').as_posix()}"
    study = optuna.create_study(study_name="curves", storage=url)
    study.set_user_attr("baseline_val_loss", BASE)
    dist = {"network_dim": optuna.distributions.CategoricalDistribution([4, 8])}
    for i, attrs in enumerate(trials):
        found = diagnose_trial(attrs)  # as lrfind.study.objective records it
        attrs = {**attrs, **({"diagnosis": found.text} if found else {})}
        study.add_trial(optuna.trial.create_trial(params={"network_dim": [4, 8][i % 2]}, distributions=dist,
                                                  value=0.5 + i, user_attrs=attrs))
    (root / "curves").mkdir()
    if recommended is not None:
        (root / "curves" / "recommendation.json").write_text(json.dumps({"trial_number": recommended}))
    return load_study_data("curves", url, root / "curves")


def test_the_recommended_trials_curves_and_where_overfitting_begins(tmp_path):
    info = _get_epoch_curves_info(_study(tmp_path, [OVERFITTING, ONE_EPOCH], recommended=0))
    assert info.available and info.trial == 0 and info.epochs == [1, 2, 3, 4]
    assert info.train_loss == [0.105, 0.098, 0.090, 0.082]
    assert info.held_out_loss == [0.115, 0.110, 0.114, 0.118]
    assert info.drift == [0.004, 0.006, 0.009, 0.013]
    assert info.base_loss == BASE and info.kept_epoch == 2
    # 0.114 is 3.6 % above the minimum 0.110 (more than RISE_TOLERANCE): overfitting from epoch 3
    assert info.verdict == "overfits" and info.overfit_from == 3
    assert info.diagnosis.startswith("overfits from epoch 3")
    figure = epoch_curves_figure(info)
    names = [trace.name for trace in figure.data]
    assert names == ["training loss", "held-out loss", "drift"]
    lines = {(shape.type, shape.x0, shape.y0) for shape in figure.layout.shapes}
    assert ("line", 3, 0) in lines  # the vertical mark at epoch 3
    assert any(shape.y0 == BASE and shape.y1 == BASE for shape in figure.layout.shapes)  # the base model's loss


def test_no_curve_without_a_recommendation_or_for_one_epoch_count(tmp_path):
    assert not _get_epoch_curves_info(_study(tmp_path / "a", [OVERFITTING], recommended=None)).available
    one = _get_epoch_curves_info(_study(tmp_path / "b", [OVERFITTING, ONE_EPOCH], recommended=1))
    assert not one.available and one.trial == 1 and "one epoch count" in one.reason
    assert epoch_curves_figure(one) is None


def test_a_curve_a_trial_lacks_is_left_out_not_invented(tmp_path):
    partial = {**OVERFITTING, "epoch_train_losses": {"1": 0.105}}  # e.g. a pruned swept trial
    partial.pop("epoch_drifts")
    info = _get_epoch_curves_info(_study(tmp_path, [partial], recommended=0))
    assert info.available and info.train_loss == [] and info.drift == []
    assert [trace.name for trace in epoch_curves_figure(info).data] == ["held-out loss"]


def test_trials_table_gives_each_trials_diagnosis_drift_and_terms(tmp_path):
    frame = _get_trials_table_info(_study(tmp_path, [OVERFITTING, ONE_EPOCH], recommended=0))
    assert frame.loc[0, "diagnosis"].startswith("overfits from epoch 3")
    assert frame["diagnosis"].isna()[1]  # one epoch count: no curve to diagnose
    assert list(frame["drift"]) == [0.006, 0.002]
    assert frame.loc[0, "term drift"] == 0.006 and frame.loc[0, "term clip_i"] == -0.2
    columns = list(frame.columns)
    assert columns.index("drift") < columns.index("diagnosis") < columns.index("network_dim")  # up front
    assert "objective_terms" not in columns


def test_the_page_renders_the_section(tmp_path):
    from lrfind.report.html import render_page
    from lrfind.report.info import gather_info

    page, figures = render_page(gather_info(_study(tmp_path, [OVERFITTING, ONE_EPOCH], recommended=0)))
    assert 'id="epoch-curves"' in page and 'data-figure="epoch-curves"' in page
    assert "overfits from epoch 3" in page and figures >= 1


def test_the_page_renders_without_a_recommendation(tmp_path):
    from lrfind.report.html import render_page
    from lrfind.report.info import gather_info

    page, _ = render_page(gather_info(_study(tmp_path, [ONE_EPOCH], recommended=None)))
    assert "no recommendation yet" in page


def _final(epochs: list[dict], base=None) -> StudyData:
    final = {"output_name": "cat", "epochs": epochs, "suggested_epoch": 2, "suggested_file": "cat-000002.safetensors",
             "reason": "", **({"base_val_loss": base} if base is not None else {})}
    return StudyData(name="s", storage_url="", study_dir=Path("."), study=None, trials=[], directions=["minimize"],
                     user_attrs={}, final=final)


def _rows(held_out, train, drift):
    return [{"epoch": e, "val_loss": v, "train_loss": t, "drift": d, "file": f"cat-{e:06d}.safetensors"}
            for e, v, t, d in zip((1, 2, 3, 4), held_out, train, drift)]


def test_the_final_runs_curves_are_diagnosed_against_its_base_model_loss():
    """A final run with held-out images: training loss falls, held-out loss rises from epoch 3."""
    info = _get_final_curves_info(_final(_rows((0.115, 0.110, 0.114, 0.118), (0.105, 0.098, 0.090, 0.082),
                                               (0.004, 0.006, 0.009, 0.013)), base=BASE))
    assert info.available and info.trial is None and info.epochs == [1, 2, 3, 4]
    assert info.train_loss == [0.105, 0.098, 0.090, 0.082] and info.drift == [0.004, 0.006, 0.009, 0.013]
    assert info.base_loss == BASE and info.kept_epoch == 2 and info.loss_label == "held-out loss"
    assert info.verdict == "overfits" and info.overfit_from == 3
    figure = epoch_curves_figure(info)
    assert figure.layout.title.text == "Final run per epoch"
    assert [trace.name for trace in figure.data] == ["training loss", "held-out loss", "drift"]
    html = final_curves_html(info).html
    assert 'id="final-curves"' in html and "overfits from epoch 3" in html


def test_a_final_run_without_held_out_images_is_drawn_but_not_diagnosed():
    info = _get_final_curves_info(_final(_rows((0.115, 0.110, 0.104, 0.098), (0.105, 0.098, 0.090, 0.082),
                                               (None,) * 4)))
    assert info.available and info.diagnosis is None and info.verdict is None and not info.drift
    assert info.loss_label == "validation loss (training images)"
    assert "No diagnosis" in final_curves_html(info).html


def test_no_final_curve_before_a_final_run_or_with_one_epoch():
    none = _get_final_curves_info(StudyData(name="s", storage_url="", study_dir=Path("."), study=None, trials=[],
                                            directions=["minimize"], user_attrs={}))
    assert not none.available and final_curves_html(none).html == ""
    one = _get_final_curves_info(_final(_rows((0.11,), (0.1,), (0.004,)), base=BASE))
    assert not one.available and "fewer than two" in one.reason
