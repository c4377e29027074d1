"""`lrfind train DATASET ...`: one LoRA training run with kohya's option names."""

from __future__ import annotations

import argparse

HELP = {
    "train_data_dir": "dataset folder in kohya layout (DATASET/10_name/*.png + captions)",
    "pretrained_model_name_or_path": "base model: tiny, a diffusers folder, or an SD 1.x .safetensors file",
    "network_dim": "LoRA rank",
    "network_alpha": "LoRA alpha; the LoRA output is scaled by alpha/dim",
    "optimizer_type": "AdamW, AdamW8bit, Lion, DAdaptAdam, DAdaptLion, Prodigy",
    "optimizer_args": "extra optimizer arguments, e.g. weight_decay=0.1 d_coef=2",
    "lr_scheduler": "constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial",
    "output_dir": "folder for NAME.safetensors and per-epoch files",
    "logging_dir": "write TensorBoard logs (kohya's tag names) under this folder",
    "validation_split": "fraction of images held out for the validation loss (0: use the training images)",
}


def register(subparsers) -> None:
    from lrfind.training.config import TrainConfig
    from lrfind.cli.options import add_model_options

    parser = subparsers.add_parser(
        "train", help="train a LoRA (kohya option names; --config FILE.toml accepted)",
        description="Train a LoRA on a kohya-layout dataset. Options take kohya's names, with dashes or "
                    "underscores; a kohya --config_file TOML works too (command-line options win).",
    )
    parser.add_argument("dataset", nargs="?", help="dataset folder (or train_data_dir in the config)")
    parser.add_argument("--config", "--config-file", "--config_file", dest="config_file", metavar="FILE.toml",
                        help="TOML file with the same keys (flat or in kohya's sections)")
    add_model_options(parser, TrainConfig, aliases={"pretrained_model_name_or_path": ["--model"],
                                                     "train_batch_size": ["--batch-size"]},
                      help_texts=HELP)
    parser.set_defaults(func=run)


def build_train_config(args: argparse.Namespace):
    from lrfind.cli.options import collect_options, read_toml_config
    from lrfind.config import build
    from lrfind.errors import ConfigError
    from lrfind.training.config import TrainConfig

    values = read_toml_config(args.config_file, TrainConfig) if args.config_file else {}
    values.update(collect_options(args, TrainConfig))
    if args.dataset:
        values["train_data_dir"] = args.dataset
    if "train_data_dir" not in values:
        raise ConfigError("no dataset given: pass DATASET or set train_data_dir in the --config file")
    return build(TrainConfig, args.config_file or "", **values)


def run(args: argparse.Namespace) -> int:
    from lrfind.training.run import train_lora

    config = build_train_config(args)
    result = train_lora(config)
    state = result.state
    val = f"; final validation loss {state.val_loss:.5f}" if state.val_loss is not None else ""
    print(f"trained {state.step} steps ({state.epoch} epochs) in {result.seconds:.1f} s{val}")
    for path in result.saved:
        print(f"saved {path}")
    if result.logdir:
        print(f"TensorBoard logs: {result.logdir}")
    return 0
