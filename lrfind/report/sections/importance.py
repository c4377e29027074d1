"""Parameter importances for the (first) objective (optuna.importance)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from lrfind.probe.page import plot_text
from lrfind.report.data import StudyData
from lrfind.report.sections.common import TEMPLATE, Fragment, drawn, section
from lrfind.report.sections.objectives import complete_trials, first_value, objective_names

MIN_TRIALS_FOR_IMPORTANCE = 2


@dataclass(frozen=True)
class ImportanceInfo:
    available: bool
    importances: dict[str, float] = field(default_factory=dict)  # parameter -> importance (sums to 1)
    reason: str = ""  # why there are none (available False)
    objective: str = ""
    method: str = ""


def _get_importance_info(data: StudyData) -> ImportanceInfo:
    """Optuna's default evaluator, PED-ANOVA: deterministic and needs no scikit-learn (fANOVA does)."""
    import optuna

    trials = complete_trials(data)
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE:
        return ImportanceInfo(False, reason=f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} "
                                            f"completed trials; the study has {len(trials)}")
    sign = 1.0 if data.directions[0] == "minimize" else -1.0  # PED-ANOVA explains LOW target values
    try:
        with warnings.catch_warnings():  # its "low target values" reminder: handled by `sign`
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(
                data.study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=lambda trial: sign * first_value(trial))
    except (ValueError, RuntimeError) as err:  # e.g. every searched value the same so far
        return ImportanceInfo(False, reason=f"importances not computable yet: {err}")
    if not importances:
        return ImportanceInfo(False, reason="no parameter varied between completed trials")
    return ImportanceInfo(True, importances={k: float(v) for k, v in importances.items()},
                          objective=objective_names(data)[0], method="PED-ANOVA")


def importance_figure(info: ImportanceInfo):
    if not info.available:
        return None
    import plotly.graph_objects as go

    items = sorted(info.importances.items(), key=lambda kv: kv[1])
    figure = go.Figure(go.Bar(x=[v for _, v in items], y=[plot_text(k) for k, _ in items], orientation="h",
                              text=[f"{v:.2f}" for _, v in items], textposition="outside"))
    figure.update_xaxes(title_text=f"importance ({info.method}, sums to 1)", range=[0, 1.15])
    figure.update_layout(title=plot_text(f"Parameter importances for {info.objective}"), template=TEMPLATE,
                         height=120 + 40 * len(items))
    return figure


def importance_html(info: ImportanceInfo) -> Fragment:
    return section("importance", "Parameter importances", "" if info.available else info.reason,
                   drawn("importance", importance_figure(info)))
