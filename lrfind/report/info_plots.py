"""Plot sections of the report as data: history, importances, parallel coordinates, dim x alpha,
intermediate values (what pruning cut and saved), Pareto front. Pure: study data in, dicts out.

In a multi-objective (--pareto) study the plots of one value use the first objective and say so.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

from lrfind.jsonfiles import finite
from lrfind.report.data import StudyData, trial_values
from lrfind.study.epoch_sweep import with_swept_epoch
from lrfind.study.space import TrialParams

MIN_TRIALS_FOR_IMPORTANCE = 2


def objective_names(data: StudyData) -> list[str]:
    names = getattr(data.study, "metric_names", None)
    if names and len(names) == len(data.directions):
        return list(names)
    return ["objective"] if len(data.directions) == 1 else [f"objective {i}" for i in range(len(data.directions))]


def _complete(data: StudyData) -> list:
    """Complete trials with finite values."""
    done = []
    for trial in data.trials:
        values = trial_values(trial)
        if trial.state.name == "COMPLETE" and values and all(finite(v) is not None for v in values):
            done.append(trial)
    return done


def _first_value(trial) -> float:
    return float(trial.values[0])


def _get_history_info(data: StudyData) -> dict:
    trials = _complete(data)
    names = objective_names(data)
    info: dict[str, Any] = {"numbers": [t.number for t in trials], "objective_names": names,
                            "values": [[float(t.values[i]) for t in trials] for i in range(len(names))],
                            "best_so_far": None, "direction": data.directions[0]}
    if not data.multi_objective and trials:
        better = min if data.directions[0] == "minimize" else max
        best, running = [], None
        for trial in trials:
            running = _first_value(trial) if running is None else better(running, _first_value(trial))
            best.append(running)
        info["best_so_far"] = best
    return info


def _get_importance_info(data: StudyData) -> dict:
    """optuna.importance of each parameter for the (first) objective.

    Optuna's default evaluator, PED-ANOVA: deterministic and needs no scikit-learn (fANOVA does).
    """
    import optuna

    trials = _complete(data)
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE:
        return {"available": False, "importances": {},
                "reason": f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials; "
                          f"the study has {len(trials)}"}
    sign = 1.0 if data.directions[0] == "minimize" else -1.0  # PED-ANOVA explains LOW target values
    try:
        with warnings.catch_warnings():  # its "low target values" reminder: handled by `sign`
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(
                data.study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=lambda trial: sign * _first_value(trial))
    except (ValueError, RuntimeError) as err:  # e.g. every searched value the same so far
        return {"available": False, "importances": {}, "reason": f"importances not computable yet: {err}"}
    if not importances:
        return {"available": False, "importances": {}, "reason": "no parameter varied between completed trials"}
    return {"available": True, "importances": {k: float(v) for k, v in importances.items()},
            "objective": objective_names(data)[0], "method": "PED-ANOVA"}


def _dimension(name: str, values: list) -> dict:
    """A parallel-coordinates axis: numbers as they are, names as indices with their labels."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"name": name, "values": [float(v) for v in values], "labels": None}
    labels = sorted({str(v) for v in values})
    return {"name": name, "values": [float(labels.index(str(v))) for v in values], "labels": labels}


def _get_parallel_info(data: StudyData) -> dict:
    trials = _complete(data)
    if not trials:
        return {"available": False, "reason": "no completed trial yet", "dimensions": []}

    params = [with_swept_epoch(t.params, t.user_attrs) for t in trials]  # swept trials: their best epoch
    names = sorted({name for p in params for name in p})
    # A parameter that not every trial has (e.g. a later space) would misalign the axes: skip it.
    names = [n for n in names if all(n in p for p in params)]
    dimensions = [_dimension(n, [p[n] for p in params]) for n in names]
    objective = objective_names(data)[0]
    dimensions.append({"name": objective, "values": [_first_value(t) for t in trials], "labels": None})
    return {"available": True, "numbers": [t.number for t in trials], "dimensions": dimensions,
            "objective": objective}


def _alpha_of(trial) -> Optional[float]:
    trained = (trial.user_attrs.get("train_values") or {}).get("network_alpha")
    if finite(trained) is not None:
        return float(trained)
    if "network_dim" not in trial.params or "network_alpha_fraction" not in trial.params:
        return None

    # the study's own rounding rule (TrialParams.network_alpha), not a copy of it
    point = TrialParams(network_dim=int(trial.params["network_dim"]),
                        network_alpha_fraction=float(trial.params["network_alpha_fraction"]),
                        epochs=1, repeats=None, lr_multiplier=1.0, optimizer="AdamW", lr_scheduler="constant")
    return point.network_alpha


def _get_dim_alpha_info(data: StudyData) -> dict:
    """Points (dim, alpha, value) and, when both vary, a grid of the best value per (alpha, dim) cell."""
    points = [(int(t.params["network_dim"]), _alpha_of(t), _first_value(t), t.number)
              for t in _complete(data) if "network_dim" in t.params]
    points = [p for p in points if p[1] is not None]
    if not points:
        return {"available": False, "reason": "no completed trial with network_dim and alpha yet", "points": []}
    dims = sorted({p[0] for p in points})
    alphas = sorted({p[1] for p in points})
    better = min if data.directions[0] == "minimize" else max
    cells: dict[tuple, float] = {}
    for dim, alpha, value, _ in points:
        cells[(alpha, dim)] = better(value, cells.get((alpha, dim), value))
    grid = [[cells.get((alpha, dim)) for dim in dims] for alpha in alphas]
    kind = "contour" if len(dims) >= 2 and len(alphas) >= 2 and len(points) >= 4 else "slices"
    return {"available": True, "kind": kind, "objective": objective_names(data)[0],
            "points": [{"dim": d, "alpha": a, "value": v, "trial": n} for d, a, v, n in points],
            "grid": {"dims": dims, "alphas": alphas, "values": grid}}


def _steps(trial, key: str) -> Optional[int]:
    value = trial.user_attrs.get(key)
    if finite(value) is not None:
        return int(value)
    if key == "steps_done" and trial.intermediate_values:
        return int(max(trial.intermediate_values))
    if key == "steps_planned":
        planned = (trial.user_attrs.get("train_values") or {}).get("max_train_steps")
        return int(planned) if finite(planned) is not None else None
    return None


def _get_intermediate_info(data: StudyData) -> dict:
    """Each trial's reported values, and what pruning saved: planned minus done steps of pruned trials."""
    series, done_total, planned_total = [], 0, 0
    pruned = {"trials": 0, "steps_done": 0, "steps_planned": 0, "seconds": 0.0}
    for trial in data.trials:
        if trial.state.name not in ("COMPLETE", "PRUNED"):
            continue
        if trial.intermediate_values:
            steps = sorted(trial.intermediate_values)
            series.append({"trial": trial.number, "state": trial.state.name, "steps": steps,
                           "values": [finite(trial.intermediate_values[s]) for s in steps]})
        done, planned = _steps(trial, "steps_done"), _steps(trial, "steps_planned")
        if done is None or planned is None:
            continue
        done_total, planned_total = done_total + done, planned_total + planned
        if trial.state.name == "PRUNED":
            pruned["trials"] += 1
            pruned["steps_done"] += done
            pruned["steps_planned"] += planned
            pruned["seconds"] += finite(trial.user_attrs.get("seconds")) or 0.0
    saved = pruned["steps_planned"] - pruned["steps_done"]
    return {"series": series, "pruned": pruned, "steps_saved": saved, "steps_done_total": done_total,
            "steps_planned_total": planned_total,
            "saved_fraction": saved / planned_total if planned_total else 0.0}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when x is minimised and y maximised.

    Hand-written (a few lines): Optuna's front helpers work on a study's objectives only, and in a
    single-objective study val loss and CLIP are trial attributes, not objectives.
    """
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(ox <= x and oy >= y and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _get_pareto_info(data: StudyData) -> dict:
    """Validation loss (ratio to the base model) vs CLIP-I (else CLIP-T) of completed trials."""
    rows = [t for t in data.trials if t.state.name == "COMPLETE"]
    has_ratio = any(finite(t.user_attrs.get("val_loss_ratio")) is not None for t in rows)
    x_key = "val_loss_ratio" if has_ratio else "val_loss"
    y_key = "clip_i" if any(finite(t.user_attrs.get("clip_i")) is not None for t in rows) else "clip_t"
    usable = [t for t in rows if finite(t.user_attrs.get(x_key)) is not None
              and finite(t.user_attrs.get(y_key)) is not None]
    if not usable:
        return {"available": False, "reason": "needs completed trials with both a validation loss and a CLIP score "
                                              "(a --score loss study has no CLIP scores)"}
    points = [(float(t.user_attrs[x_key]), float(t.user_attrs[y_key])) for t in usable]
    front = pareto_front(points)
    return {"available": True, "x_name": x_key, "y_name": y_key, "trials": [t.number for t in usable],
            "x": [p[0] for p in points], "y": [p[1] for p in points],
            "front_trials": [usable[i].number for i in front],
            "front_x": [points[i][0] for i in front], "front_y": [points[i][1] for i in front]}
