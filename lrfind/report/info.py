"""`gather_info`: every section's info, in page order, from one `StudyData`.

Each section (lrfind.report.sections.*) holds its typed info, its pure `_get_<section>_info(data)`
(Optuna's style: the tests check these, not the HTML), its figure and its HTML fragment;
lrfind.report.html lays the fragments out in the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lrfind.report.data import StudyData
from lrfind.report.sections.dim_alpha import DimAlphaInfo, _get_dim_alpha_info
from lrfind.report.sections.epoch_curves import EpochCurvesInfo, _get_epoch_curves_info, _get_final_curves_info
from lrfind.report.sections.environment import EnvironmentInfo, _get_environment_info
from lrfind.report.sections.history import HistoryInfo, _get_history_info
from lrfind.report.sections.importance import ImportanceInfo, _get_importance_info
from lrfind.report.sections.intermediate import IntermediateInfo, _get_intermediate_info
from lrfind.report.sections.parallel import ParallelInfo, _get_parallel_info
from lrfind.report.sections.pareto import ParetoInfo, _get_pareto_info
from lrfind.report.sections.probe import ProbeInfo, _get_probe_info
from lrfind.report.sections.recommendation import RecommendationInfo, _get_recommendation_info
from lrfind.report.sections.samples import SampleGridInfo, _get_sample_grid_info
from lrfind.report.sections.status import StatusInfo, _get_status_info
from lrfind.report.sections.trials_table import _get_trials_table_info
from lrfind.report.sections.warnings import ReportWarning, _get_warnings_info, unreadable_image_warnings
from lrfind.report.sections.xy_grid import XYGridInfo, _get_xy_grid_info

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ReportInfo:
    """The whole page as data, one field per section, in page order."""
    title: str
    status: StatusInfo
    warnings: list[ReportWarning]
    recommendation: RecommendationInfo
    epoch_curves: EpochCurvesInfo
    final_curves: EpochCurvesInfo
    probe: ProbeInfo
    history: HistoryInfo
    importance: ImportanceInfo
    parallel: ParallelInfo
    dim_alpha: DimAlphaInfo
    intermediate: IntermediateInfo
    pareto: ParetoInfo
    samples: SampleGridInfo
    xy_grid: XYGridInfo
    trials: pd.DataFrame  # its columns are the study's own: open
    environment: EnvironmentInfo


def gather_info(data: StudyData) -> ReportInfo:
    """Every section's info, in page order."""
    samples, xy_grid = _get_sample_grid_info(data), _get_xy_grid_info(data)
    images = [cell for row in samples.rows for cell in row.cells if cell] + [grid.image for grid in xy_grid.grids]
    return ReportInfo(
        title=f"lrfind report: {data.name}",
        status=_get_status_info(data),
        warnings=_get_warnings_info(data) + unreadable_image_warnings(images),
        recommendation=_get_recommendation_info(data),
        epoch_curves=_get_epoch_curves_info(data),
        final_curves=_get_final_curves_info(data),
        probe=_get_probe_info(data),
        history=_get_history_info(data),
        importance=_get_importance_info(data),
        parallel=_get_parallel_info(data),
        dim_alpha=_get_dim_alpha_info(data),
        intermediate=_get_intermediate_info(data),
        pareto=_get_pareto_info(data),
        samples=samples,
        xy_grid=xy_grid,
        trials=_get_trials_table_info(data),
        environment=_get_environment_info(data),
    )
