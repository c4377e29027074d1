"""What the plot sections share: the objectives' names and the completed trials with finite values.

In a multi-objective (--pareto) study the plots of one value use the first objective and say so.
"""

from __future__ import annotations

from lrfind.jsonfiles import finite
from lrfind.report.data import StudyData, trial_values


def objective_names(data: StudyData) -> list[str]:
    names = getattr(data.study, "metric_names", None)
    if names and len(names) == len(data.directions):
        return list(names)
    return ["objective"] if len(data.directions) == 1 else [f"objective {i}" for i in range(len(data.directions))]


def complete_trials(data: StudyData) -> list:
    """Complete trials with finite values."""
    done = []
    for trial in data.trials:
        values = trial_values(trial)
        if trial.state.name == "COMPLETE" and values and all(finite(v) is not None for v in values):
            done.append(trial)
    return done


def first_value(trial) -> float:
    return float(trial.values[0])
