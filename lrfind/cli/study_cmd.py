"""`lrfind study DATASET --name NAME`: Optuna-driven short trials that recommend the settings."""

from __future__ import annotations

import argparse

HELP = {
    "name": "study name: studies/NAME/ holds its files, studies/NAME.db its database (sqlite default)",
    "space": "search space: a preset (character, style, concept, tiny) or a TOML file",
    "n_trials": "finished (complete or pruned) trials to reach; rerunning the command resumes",
    "timeout": "stop starting new trials after this long, e.g. 8h, 90m",
    "storage": "Optuna storage URL, e.g. postgresql://user:pass@host/db for many workers",
    "out": "folder for the study's files (default studies/NAME); the default sqlite database, NAME.db, "
           "goes beside it, where `lrfind report` looks for it",
    "trial_budget": "steps of the longest trial (overrides the space's budget)",
    "clip": "local folder of a CLIP model (transformers format) for CLIP-I/CLIP-T scores",
    "score": "full: validation loss and CLIP; loss: validation loss only",
    "pruner": "stop hopeless trials early: hyperband (default), median, none",
    "sampler": "auto (default): Gaussian-process Bayesian optimisation for the first 1000 trials, then TPE; "
               "gp; tpe (multivariate)",
    "pareto": "multi-objective study (validation loss vs CLIP), no pruning",
    "trial_seed": "same: every trial trains with --seed (paired comparison); per-trial: --seed + trial number",
    "epoch_mode": "sweep (default): constant-lr trials train the most epochs and keep their best epoch "
                  "(exact for a constant lr); sample: one trial per sampled epoch count",
    "sampler_seed": "seed of Optuna's sampler (default: --seed mixed with the process id, so workers differ); "
                    "set it for a reproducible single-worker study",
}


def register(subparsers) -> None:
    from lrfind.cli.options import add_model_options
    from lrfind.study.config import StudyConfig

    parser = subparsers.add_parser("study", help="search dim/alpha/epochs/repeats/lr with Optuna",
                                   description="Short trial trainings driven by Optuna, pruned when hopeless, "
                                               "scored by a deterministic validation loss and CLIP; writes "
                                               "studies/NAME/recommendation.json. Rerun the same command to resume.")
    parser.add_argument("dataset", metavar="DATASET", help="kohya-layout dataset folder")
    add_model_options(parser, StudyConfig, exclude=("dataset",), help_texts=HELP)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lrfind.cli.options import collect_options
    from lrfind.config import build
    from lrfind.study.config import StudyConfig
    from lrfind.study.runner import run_study

    values = collect_options(args, StudyConfig)
    values["dataset"] = args.dataset
    cfg = build(StudyConfig, **values)
    outcome = run_study(cfg)
    print(outcome.summary)
    return 0
