"""`lrfind study DATASET --name NAME`: Optuna-driven short trials that recommend the settings."""

from __future__ import annotations

import argparse

# the flags' (and a --config TOML's) flat names -> StudyConfig's fields (lrfind.cli.flat_names), in
# --help's order; `run` is the nested training options (a TOML's [run] table)
STUDY_NAMES: dict[str, tuple[str, ...]] = {
    "dataset": ("dataset", "train_dir"),
    "name": ("name",),
    "model": ("model", "model"),
    "allow_pickle": ("model", "allow_pickle"),
    **{name: (name,) for name in (
        "space", "n_trials", "timeout", "storage", "workers", "trials_at_once", "devices", "trial_budget", "clip", "dino", "score",
        "pruner", "sampler", "pareto", "seed", "trial_seed", "epoch_mode", "sampler_seed")},
    "caption_extension": ("dataset", "caption_extension"),
    **{name: (name,) for name in (
        "cache_dir", "out", "probe_steps", "heartbeat_interval", "grace_period", "progress", "validation_split",
        "validation_min_images", "validation_dir", "torch_compile", "run")},
}

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
    "dino": "local folder of a DINO or DINOv2 model (transformers format, e.g. facebook/dinov2-small): adds "
            "DINO likeness of the samples to the held-out images to the objective ([objective] dino weight)",
    "score": "full: validation loss and CLIP; loss: validation loss only",
    "pruner": "stop hopeless trials early: hyperband (default), median, none",
    "sampler": "auto (default): Gaussian-process Bayesian optimisation for the first 1000 trials, then TPE; "
               "gp; tpe (multivariate)",
    "pareto": "multi-objective study (held-out loss, drift, CLIP-I, CLIP-T, and DINO with --dino), no pruning",
    "trial_seed": "same: every trial trains with --seed (paired comparison); per-trial: --seed + trial number",
    "epoch_mode": "sweep (default): constant-lr trials train the most epochs and keep their best epoch "
                  "(exact for a constant lr); sample: one trial per sampled epoch count",
    "workers": "local worker processes on this study (CPU); the default storage is then a journal file, "
               "studies/NAME.journal, which several processes can write",
    "trials_at_once": "train up to K trials together, each sample of a batch through its own trial's LoRA: the "
                      "frozen model's work is shared (CPU at 128 px: about half the time per trial; memory grows "
                      "with K). LyCORIS types, dropouts, fp16 and --torch-compile train alone",
    "devices": "one worker per device, pinned with CUDA_VISIBLE_DEVICES, e.g. 0,1",
    "validation_split": "share of each concept folder's images held out: no trial trains on them, every trial "
                        "validates on them (0: validate on the training images)",
    "validation_min_images": "a concept folder with fewer images holds none out (and the study says so)",
    "validation_dir": "validate on this kohya-layout folder's images instead of a split of DATASET "
                      "(then every DATASET image trains)",
    "sampler_seed": "seed of Optuna's sampler (default: --seed mixed with the process id, so workers differ); "
                    "set it for a reproducible single-worker study",
}


def register(subparsers) -> None:
    from lrfind.cli.flat_names import flat_fields
    from lrfind.cli.options import add_model_options
    from lrfind.cli.train_cmd import HELP as TRAIN_HELP
    from lrfind.study.config import StudyConfig
    from lrfind.training.run_options import StudyTrainOptions

    parser = subparsers.add_parser("study", help="search dim/alpha/epochs/repeats/lr with Optuna",
                                   description="Short trial trainings driven by Optuna, pruned when hopeless, "
                                               "scored by a deterministic validation loss and CLIP; writes "
                                               "studies/NAME/recommendation.json. Rerun the same command to resume.")
    parser.add_argument("dataset", metavar="DATASET", help="kohya-layout dataset folder")
    parser.add_argument("--config", "--config-file", "--config_file", dest="config_file", metavar="FILE.toml",
                        help="TOML file with these options (flat, or kohya's sections); command-line options win")
    parser.add_argument("--worker-config", dest="worker_config", help=argparse.SUPPRESS)  # lrfind.study.workers
    add_model_options(parser, flat_fields(StudyConfig, STUDY_NAMES), exclude=("dataset", "run"), help_texts=HELP)
    train_options = parser.add_argument_group(
        "training options", "lrfind train's run-wide options; they override the space's [fixed] table. "
                            "Options the space searches (e.g. --network-dim) are refused")
    add_model_options(train_options, StudyTrainOptions, aliases={"train_batch_size": ["--batch-size"]},
                      help_texts=TRAIN_HELP)
    parser.set_defaults(func=run)


def study_values(args: argparse.Namespace) -> dict:
    """StudyConfig's values (nested) from --config FILE.toml and the command line (which wins), both
    in the flat names of STUDY_NAMES; training options (StudyTrainOptions' fields) go to `run`."""
    from lrfind.cli.flat_names import flat_fields, nest
    from lrfind.cli.options import collect_options, read_toml_config
    from lrfind.study.config import StudyConfig
    from lrfind.training.run_options import StudyTrainOptions

    fields = flat_fields(StudyConfig, STUDY_NAMES)
    values = read_toml_config(args.config_file, fields) if args.config_file else {}
    run_values = {k: values.pop(k) for k in list(values) if k in StudyTrainOptions.model_fields}
    run_values.update(values.pop("run", None) or {})
    values.update(collect_options(args, fields))
    run_values.update(collect_options(args, StudyTrainOptions))
    values["dataset"] = args.dataset
    values["run"] = run_values
    return nest(values, STUDY_NAMES)


def run(args: argparse.Namespace) -> int:
    from lrfind import api
    from lrfind.artifacts.recommendation import read_recommendation
    from lrfind.cli.flat_names import flat_names
    from lrfind.config import build
    from lrfind.secrets import mask_url
    from lrfind.study.config import StudyConfig

    if args.worker_config:  # one of several workers started by lrfind.study.workers
        from lrfind.study.workers import read_worker_config

        cfg = build(StudyConfig, args.worker_config, **read_worker_config(args.worker_config))
    else:
        cfg = build(StudyConfig, args.config_file or "", flat_names(STUDY_NAMES), **study_values(args))
    if cfg.worker_count > 1:
        code = api.study_workers(cfg, on_event=lambda text: print(f"lrfind study: {text}", flush=True))
        rec_path = cfg.out_dir() / "recommendation.json"
        if code == 0 and rec_path.is_file():  # the last worker to finish wrote it from every trial
            print(read_recommendation(rec_path).summary)
        print(f"{cfg.worker_count} workers done" + (f" (exit code {code})" if code else "")
              + f"; storage {mask_url(cfg.storage_url())}, recommendation in {rec_path}")
        return code
    from lrfind.cli.progress_print import StatusPrinter

    outcome = api.study(cfg, progress=StatusPrinter(rewrite=not args.worker_config))
    # a worker of several: the launcher prints the final recommendation once
    print(outcome.summary.splitlines()[-1] if args.worker_config else outcome.summary)
    return 0
