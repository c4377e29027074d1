"""`lrfind export-kohya NAME`: the study's recommendation as kohya sd-scripts config files."""

from __future__ import annotations

import argparse

HELP = {
    "out": "folder for kohya_config.toml and kohya_dataset.toml (default: the study folder)",
    "study_dir": "where `lrfind study` wrote recommendation.json (default studies/NAME)",
    "model": "base model for kohya's pretrained_model_name_or_path (default: the one the probe used)",
    "dataset": "the kohya-layout dataset folder (default: the one the probe used)",
    "mixed_precision": "kohya's --mixed_precision for the exported run",
    "save_every_n_epochs": "save a LoRA file every N epochs, to pick the epoch afterwards",
    "seed": "kohya's --seed",
    "caption_extension": "caption file extension of the dataset",
}


def register(subparsers) -> None:
    from lrfind.cli.options import add_model_options
    from lrfind.export.files import ExportConfig

    parser = subparsers.add_parser(
        "export-kohya", help="write kohya sd-scripts config TOMLs from a study's recommendation",
        description="Write kohya sd-scripts' training config (--config_file) and dataset config (--dataset_config) "
                    "holding the study's recommendation, and print the `accelerate launch train_network.py` line.")
    parser.add_argument("name_arg", metavar="NAME", help="study name (as given to `lrfind study --name`)")
    add_model_options(parser, ExportConfig, exclude=("name",), help_texts=HELP)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lrfind.cli.options import collect_options
    from lrfind.config import build
    from lrfind import api
    from lrfind.export.files import ExportConfig

    values = collect_options(args, ExportConfig)
    values["name"] = args.name_arg
    result = api.export_kohya(build(ExportConfig, **values))
    for warning in result.warnings:
        print(f"lrfind: warning: {warning}")
    print(f"wrote {result.config_path}")
    print(f"wrote {result.dataset_path}")
    if result.preset_path is not None:
        print(f"wrote {result.preset_path} (the LyCORIS preset lrfind trained with; the config names it)")
    print("run in kohya sd-scripts' folder:")
    print(f"  {result.command}")
    return 0
