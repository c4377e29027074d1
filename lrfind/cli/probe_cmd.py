"""`lrfind probe DATASET`: find unet_lr from a DAdaptation/Prodigy run (or a kohya log)."""

from __future__ import annotations

import argparse

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
    from lrfind.cli.options import add_model_options
    from lrfind.probe.config import ProbeConfig

    parser = subparsers.add_parser("probe", help="find the learning rate with a DAdaptation/Prodigy probe",
                                   description="Train briefly with Prodigy or DAdaptation (lr=1.0, constant) and read where "
                                               "d*lr levels off; unet_lr is that plateau x a measured factor (docs/probe.md). Derives AdamW/Lion/text-encoder "
                                               "settings; --method range adds an LR range test as a cross-check.")
    parser.add_argument("dataset_arg", nargs="?", metavar="DATASET", help="kohya-layout dataset folder")
    add_model_options(parser, ProbeConfig, exclude=("dataset",), help_texts=HELP)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lrfind.cli.options import collect_options
    from lrfind.config import build
    from lrfind.errors import ConfigError
    from lrfind import api
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import summary_text

    values = collect_options(args, ProbeConfig)
    if args.dataset_arg:
        values["dataset"] = args.dataset_arg
    if values.get("dataset") is None and values.get("from_tensorboard") is None:
        raise ConfigError("give a DATASET to probe, or --from-tensorboard LOGDIR to analyse a kohya log")
    cfg = build(ProbeConfig, **values)
    report = api.probe(cfg)
    print(summary_text(report, cfg.out_dir()))
    return 0
