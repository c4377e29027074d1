"""A synthetic study as `lrfind study` leaves it (docs/study-artifacts.md), for the report tests.

Optuna trials made with create_trial (complete, pruned, failed, optionally one running), study and
trial attributes per the contract, probe.json, recommendation.json (from lrfind.study.recommend),
sample PNGs (real photos from scikit-image) and a final run's X/Y grid PNG.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from dataset_photos import photo

EVIL = "<script>alert(1)</script>"
PROMPTS = (f"lrfcat cat {EVIL} on a sofa", "lrfcat cat in a garden")
PROBE_DIM, PROBE_ALPHA, PROBE_LR = 8, 4.0, 0.02
# (dim, alpha fraction, epochs, repeats, lr multiplier, optimizer, scheduler, val_loss ratio, clip_i)
COMPLETE = [
    (4, 0.5, 1, 1, 0.7, "AdamW", "constant", 0.97, 0.61),
    (8, 1.0, 2, 2, 1.3, "AdamW", "cosine", 0.91, 0.66),
    (8, 0.5, 3, 2, 1.0, "Lion", "constant", 0.88, 0.64),
    (4, 1.0, 2, 1, 1.8, "AdamW", "constant", 0.95, 0.69),
    (8, 0.5, 2, 1, 0.6, "AdamW", "cosine", 0.90, 0.58),
    (4, 0.5, 3, 2, 1.1, "Lion", "cosine", 0.93, 0.63),
]
PRUNED = [(8, 1.0, 3, 2, 2.0, "Lion", "constant"), (4, 1.0, 1, 2, 0.5, "AdamW", "cosine")]
BASELINE = 0.2
WEIGHTS = {"loss": 1.0, "clip_i": 0.25, "clip_t": 0.25}


def distributions(space) -> dict:
    """Optuna distributions of the space, as lrfind.study.trial_params.suggest asks for them."""
    import optuna.distributions as d

    found = {}
    for name in ("network_dim", "network_alpha_fraction", "epochs", "repeats", "lr_multiplier", "optimizer",
                 "lr_scheduler"):
        dim = getattr(space, name)
        if getattr(dim, "choices", None) is not None:
            found[name] = d.CategoricalDistribution(list(dim.choices))
        elif isinstance(dim.range[0], int) and name in ("network_dim", "epochs", "repeats"):
            found[name] = d.IntDistribution(dim.range[0], dim.range[1], step=dim.step)
        else:
            found[name] = d.FloatDistribution(dim.range[0], dim.range[1], log=True)
    return found


def _params(row) -> dict:
    keys = ("network_dim", "network_alpha_fraction", "epochs", "repeats", "lr_multiplier", "optimizer", "lr_scheduler")
    return dict(zip(keys, row[:7]))


def _dataset_stats() -> dict:
    return {"name": f"cats {EVIL}", "concepts": [
        {"folder": f"10_lrfcat {EVIL}", "name": f"lrfcat {EVIL}", "repeats": 10,
         "images_per_bucket": [[[64, 64], 6]]},
        {"folder": "5_lrfcup cup", "name": "lrfcup cup", "repeats": 5, "images_per_bucket": [[[64, 64], 2]]}],
        "reg_images": []}


def probe_report() -> dict:
    """probe.json of a converged DAdaptation probe: d*lr rises exponentially, then stays flat."""
    from lrfind.probe.plateau import analyse_curve

    rng = np.random.default_rng(0)
    steps = list(range(1, 81))
    values = [float(min(1e-6 * math.exp(0.35 * s), PROBE_LR) * math.exp(rng.normal(0, 0.01))) for s in steps]
    losses = [float(0.3 - 0.001 * s + rng.normal(0, 0.01)) for s in steps]
    result = analyse_curve(steps, values, losses)
    return {"source": {"dataset": "/data/my cats"}, "optimizer": "AdamW", "method": "both",
            "network_dim": PROBE_DIM, "network_alpha": PROBE_ALPHA, "resolution": 64, "batch_size": 1, "seed": 0,
            "status": result.status, "plateau_value": result.value, "plateau_step": result.plateau_step,
            "confidence": round(result.confidence, 3), "advice": result.advice, "steps": len(steps),
            "unet_lr": PROBE_LR, "adamw_lr": PROBE_LR, "lion_lr": PROBE_LR / 3, "lion_weight_decay_factor": 3.0,
            "text_encoder_lr": PROBE_LR / 4, "text_encoder_lr_range": [PROBE_LR / 10, PROBE_LR / 2],
            "prodigy": {"d_coef": 1.0},
            "range_test": {"status": "ok", "suggested_lr": 0.015, "min_loss_lr": 0.03, "diverged_at_lr": 0.3,
                           "advice": "use about 0.015", "points": [[i, 1e-5 * 1.5 ** i, 0.3 - 0.01 * i + (
                               0.02 * (i - 15) ** 2 / 10 if i > 15 else 0)] for i in range(25)]},
            "dataset": {"name": f"cats {EVIL}", "concepts": [f"lrfcat {EVIL}", "lrfcup cup"],
                        "images_repeats": [[6, 10], [2, 5]], "images": 8, "steps_per_epoch": 70},
            "curve": [[s, v, l] for s, v, l in zip(steps, values, losses)]}


def _write_samples(study_dir: Path, number: int, seed: int) -> list[str]:
    from lrfind.scoring.samples import save_samples

    names = ("chelsea", "coffee")
    images = [photo(n).resize((64, 64)).rotate(20 * seed) for n in names]
    paths = save_samples(images, study_dir / "trials" / str(number) / "samples", PROMPTS, [1, 2])
    return [p.relative_to(study_dir).as_posix() for p in paths]


def _complete_trial(study, space_dists, study_dir: Path, number: int, row) -> None:
    import optuna

    params = _params(row)
    ratio, clip_i = row[7], row[8]
    clip_t = 0.25 + 0.01 * number
    value = ratio - WEIGHTS["clip_i"] * clip_i - WEIGHTS["clip_t"] * clip_t
    planned = 10 * row[2] * row[3]
    history = {s: ratio + 0.02 * (planned - s) / planned for s in range(10, planned + 1, 10)}
    attrs = {"val_loss": ratio * BASELINE, "val_loss_ratio": ratio, "clip_i": clip_i, "clip_t": clip_t,
             "val_history": [[s, v * BASELINE] for s, v in history.items()], "steps_done": planned,
             "steps_planned": planned, "seconds": 3.0 + number, "train_values": {"max_train_steps": planned},
             "samples": _write_samples(study_dir, number, number)}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=space_dists, value=value,
                                              user_attrs=attrs, intermediate_values=history))


def build_study(root: Path, name: str = "cats", *, running: bool = False, recommendation: bool = True):
    """Creates ROOT/NAME.db and ROOT/NAME/...; returns (storage_url, study_dir)."""
    import optuna

    from lrfind.artifacts.probe_report import ProbeReport
    from lrfind.study.recommend import TrialRecord, recommend
    from lrfind.study.stats import DatasetStats
    from lrfind.study.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_dir, url = root / name, f"sqlite:///{(root / (name + '.db')).as_posix()}"
    study_dir.mkdir(parents=True, exist_ok=True)
    space = load_space("tiny")
    dists = distributions(space)
    probe = probe_report()
    (study_dir / "probe.json").write_text(json.dumps(probe), encoding="utf-8")
    study = optuna.create_study(study_name=name, storage=url, direction="minimize")
    compact = {k: v for k, v in probe.items() if k not in ("curve", "range_test")}
    for key, value in {"probe": compact, "baseline_val_loss": BASELINE, "dataset_stats": _dataset_stats(),
                       "space": space.model_dump(), "model": "tiny", "clip_model": "tiny-random-clip",
                       "clip_calibrated": False, "objective": "objective = val_loss / baseline - ...",
                       "environment": {"lrfind": "0.1", "torch": "2.13.0", "device": "cpu",
                                       "host": "testhost"}}.items():
        study.set_user_attr(key, value)
    for number, row in enumerate(COMPLETE):
        _complete_trial(study, dists, study_dir, number, row)
    for row in PRUNED:  # stopped at step 10 of 10 x epochs x repeats planned
        planned = 10 * row[2] * row[3]
        study.add_trial(optuna.trial.create_trial(
            params=_params(row), distributions=dists, state=optuna.trial.TrialState.PRUNED,
            intermediate_values={10: 1.2}, user_attrs={"steps_done": 10, "steps_planned": planned, "seconds": 1.5}))
    study.add_trial(optuna.trial.create_trial(
        params=_params(COMPLETE[0]), distributions=dists, state=optuna.trial.TrialState.FAIL,
        user_attrs={"fail_reason": f"the validation loss is nan {EVIL}"}))
    if running:
        study.enqueue_trial(_params(COMPLETE[1]))
        study.ask()  # RUNNING: a worker is at it
    if recommendation:
        records = [TrialRecord.from_frozen_trial(t) for t in study.get_trials()]
        rec = recommend(records, space, ProbeReport.from_dict(compact), DatasetStats.from_dict(_dataset_stats()))
        (study_dir / "recommendation.json").write_text(rec.to_json(), encoding="utf-8")
    final = study_dir / "final"
    final.mkdir(exist_ok=True)
    grid = Image.new("RGB", (4 * 64, 2 * 64), "white")
    for i in range(8):
        grid.paste(photo("chelsea").resize((64, 64)).rotate(i * 10), ((i % 4) * 64, (i // 4) * 64))
    grid.save(final / "cats_xy_grid.png")
    epochs = [{"epoch": e, "val_loss": v, "clip_i": c, "file": f"cats-00000{e}.safetensors"}
              for e, v, c in [(1, 0.91, None), (2, 0.88, 0.71), (3, 0.885, 0.69)]]
    (final / "cats_final.json").write_text(json.dumps({"suggested_epoch": 2, "reason": f"best val loss {EVIL}",
                                                       "epochs": epochs}))
    return url, study_dir
