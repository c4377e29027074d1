"""`lrfind probe DATASET`: find unet_lr from a DAdaptation/Prodigy run (or a kohya log)."""

from __future__ import annotations

import argparse

# the flags' flat names -> ProbeConfig's fields (lrfind.cli.flat_names), in --help's order
PROBE_NAMES: dict[str, tuple[str, ...]] = {
    "dataset": ("dataset", "train_dir"),
    "model": ("model", "model"),
    "allow_pickle": ("model", "allow_pickle"),
    **{name: (name,) for name in ("optimizer", "method", "steps")},
    "network_dim": ("network", "dim"),
    "network_alpha": ("network", "alpha"),
    "network_module": ("network", "module"),
    "network_args": ("network", "args"),
    "resolution": ("dataset", "resolution"),
    "batch_size": ("dataset", "batch_size"),
    "caption_extension": ("dataset", "caption_extension"),
    **{name: (name,) for name in (
        "seed", "out", "cache_dir", "from_tensorboard", "range_steps", "range_min_lr", "range_max_lr",
        "range_eval_every", "progress", "validation_split", "validation_min_images", "validation_dir",
        "held_out_evals")},
}
DATASET_FLAGS = ("resolution", "batch_size", "caption_extension")  # describe the DATASET trained on

HELP = {
    "optimizer": "probe optimizer: prodigy (default: measured nearer the AdamW optimum) or dadaptation "
                 "(DAdaptAdam, the folk recipe; the default with --from-tensorboard)",
    "method": "dadaptation: d*lr plateau; range: LR range test on the validation loss; both: side by side",
    "steps": "probe length in optimizer steps",
    "from_tensorboard": "analyse an existing kohya sd-scripts TensorBoard log instead of training",
    "out": "output folder (default studies/<dataset name>/)",
    "validation_split": "share of each concept folder's images held out as `lrfind study` holds them out (same "
                        "--seed, same images): the probe never trains on them and reports its loss there "
                        "(0: train and validate on every image)",
    "validation_min_images": "a concept folder with fewer images holds none out (and the probe says so)",
    "validation_dir": "hold out this kohya-layout folder's images instead of a split of DATASET "
                      "(then every DATASET image trains)",
    "held_out_evals": "held-out loss measurements spread over the d*lr probe, the last at its end",
}


def register(subparsers) -> None:
    from lrfind.cli.flat_names import flat_fields
    from lrfind.cli.options import add_model_options
    from lrfind.probe.config import ProbeConfig

    parser = subparsers.add_parser("probe", help="find the learning rate with a DAdaptation/Prodigy probe",
                                   description="Train briefly with Prodigy or DAdaptation (lr=1.0, constant) and read where "
                                               "d*lr levels off; unet_lr is that plateau x a measured factor (docs/probe.md). Derives AdamW/Lion/text-encoder "
                                               "settings; --method range adds an LR range test as a cross-check.")
    parser.add_argument("dataset_arg", nargs="?", metavar="DATASET", help="kohya-layout dataset folder")
    add_model_options(parser, flat_fields(ProbeConfig, PROBE_NAMES), exclude=("dataset",), help_texts=HELP)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lrfind.cli.flat_names import flat_fields, flat_names, nest
    from lrfind.cli.options import collect_options
    from lrfind.config import build
    from lrfind.errors import ConfigError
    from lrfind import api
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import summary_text

    values = collect_options(args, flat_fields(ProbeConfig, PROBE_NAMES))
    if args.dataset_arg:
        values["dataset"] = args.dataset_arg
    if values.get("dataset") is None and values.get("from_tensorboard") is None:
        raise ConfigError("give a DATASET to probe, or --from-tensorboard LOGDIR to analyse a kohya log")
    given = [name for name in DATASET_FLAGS if name in values]
    if values.get("dataset") is None and given:
        raise ConfigError(f"--{given[0].replace('_', '-')} describes the DATASET the probe trains on: give DATASET, "
                          "or leave it out with --from-tensorboard")
    cfg = build(ProbeConfig, "", flat_names(PROBE_NAMES), **nest(values, PROBE_NAMES))
    report = api.probe(cfg)
    print(summary_text(report, cfg.out_dir()))
    return 0
