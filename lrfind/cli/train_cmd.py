"""`lrfind train DATASET ...`: one LoRA training run with kohya's option names (an edge: flat names
map onto TrainConfig's nested parts through lrfind.training.kohya_names)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lrfind.optimizers import optimizer_names

HELP = {
    "train_data_dir": "dataset folder in kohya layout (DATASET/10_name/*.png + captions)",
    "pretrained_model_name_or_path": "base model: tiny, a diffusers folder, or an SD 1.x .safetensors file",
    "network_dim": "LoRA rank",
    "network_alpha": "LoRA alpha; the LoRA output is scaled by alpha/dim",
    "network_args": "kohya's network args, e.g. conv_dim=4 conv_alpha=1 loraplus_lr_ratio=16 rank_dropout=0.1",
    "network_dropout": "dropout on the LoRA down-projection output while training (kohya's)",
    "optimizer_type": ", ".join(optimizer_names()),
    "optimizer_args": "extra optimizer arguments, e.g. weight_decay=0.1 d_coef=2",
    "lr_scheduler": "constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial",
    "output_dir": "folder for NAME.safetensors and per-epoch files",
    "logging_dir": "write TensorBoard logs (kohya's tag names) under this folder",
    "validation_split": "fraction of images held out for the validation loss (0: use the training images)",
    "concept_repeats": "repeats per concept folder, overriding its N_ prefix, e.g. 10_mychar=12",
    "sample_every_n_epochs": "draw samples from the sample prompts every N epochs (and at the last)",
    "sample_prompts": "text file, one prompt a line (kohya's '--d SEED' kept); default: trigger word + scenes",
    "sample_steps": "DDIM steps per sample image",
    "xy_grid": "after a run with samples: an X/Y grid of saved epochs x LoRA weights, and a suggested epoch",
    "xy_grid_weights": "LoRA weights of the X/Y grid's columns",
    "clip": "local CLIP folder (transformers format): CLIP-I per sampled epoch breaks ties of the suggested epoch",
    "max_grad_norm": "clip the LoRA's gradient norm at this value before each step (kohya's default 1.0; 0: no clipping)",
    "save_state": "write a resumable state at each epoch end (only the newest is kept)",
    "zero_terminal_snr": "rescale the training noise schedule to zero terminal SNR (kohya's; with --v-parameterization)",
}


def register(subparsers) -> None:
    from lrfind.cli.options import add_model_options
    from lrfind.training.kohya_names import kohya_fields

    parser = subparsers.add_parser(
        "train", help="train a LoRA (kohya option names; --config FILE.toml accepted)",
        description="Train a LoRA on a kohya-layout dataset. Options take kohya's names, with dashes or "
                    "underscores; a kohya --config_file TOML works too (command-line options win).",
    )
    parser.add_argument("dataset", nargs="?", help="dataset folder (or train_data_dir in the config)")
    parser.add_argument("--config", "--config-file", "--config_file", dest="config_file", metavar="FILE.toml",
                        help="TOML file with the same keys (flat or in kohya's sections)")
    parser.add_argument("--from-study", "--from_study", dest="from_study", metavar="NAME",
                        help="the full run a study recommends (studies/NAME/recommendation.json); --config "
                             "and options given here override its values")
    parser.add_argument("--study-dir", "--study_dir", dest="study_dir", type=Path, metavar="DIR",
                        help="where the study wrote its files (default studies/NAME)")
    parser.add_argument("--resume", nargs="?", const="last", default=argparse.SUPPRESS, metavar="STATE_DIR",
                        help="continue an interrupted run from its newest saved state (or from STATE_DIR); "
                             "give the same options as the interrupted run")
    parser.add_argument("--num-processes", "--num_processes", dest="num_processes", type=int, default=1,
                        metavar="N", help="data-parallel training in N processes on this machine (one per GPU; "
                                          "gloo on the CPU): each takes batch-size images of every step; the same "
                                          "as `accelerate launch --num_processes N -m lrfind train ...`")
    add_model_options(parser, kohya_fields(), aliases={"pretrained_model_name_or_path": ["--model"],
                                                     "train_batch_size": ["--batch-size"]},
                      exclude=("resume",), help_texts=HELP)
    parser.set_defaults(func=run)


def build_train_config(args: argparse.Namespace):
    from lrfind.cli.options import collect_options, read_toml_config
    from lrfind.errors import ConfigError
    from lrfind.final.from_study import from_study_values
    from lrfind.training.kohya_names import kohya_fields, train_config

    fields = kohya_fields()  # kohya's flat names: the flags and the TOML's keys
    values = from_study_values(args.from_study, args.study_dir) if args.from_study else {}
    values.update(read_toml_config(args.config_file, fields) if args.config_file else {})
    values.update(collect_options(args, fields))
    if args.dataset:
        values["train_data_dir"] = args.dataset
    if "train_data_dir" not in values:
        raise ConfigError("no dataset given: pass DATASET or set train_data_dir in the --config file")
    return train_config(values, args.config_file or "")


def run(args: argparse.Namespace) -> int:
    from lrfind import api
    from lrfind.training.distributed import launch_command, launched

    config = build_train_config(args)
    if args.num_processes < 1:
        from lrfind.errors import ConfigError

        raise ConfigError(f"--num-processes {args.num_processes}: give 1 or more")
    if args.num_processes > 1 and not launched():  # start the processes; each runs this command
        import subprocess

        return subprocess.run(launch_command(args.num_processes, list(args.argv))).returncode
    try:
        result = api.train(config)
    except KeyboardInterrupt:
        if config.save_state:
            from lrfind.errors import Interrupted

            raise Interrupted(f"training interrupted; rerun the same command with --resume to continue from the "
                              f"last finished epoch (states in {config.output_dir})") from None
        raise
    if not result.main_process:
        return 0  # the main process reports
    state = result.state
    processes = result.processes
    if processes > 1:
        print(f"data-parallel: {processes} processes x batch {config.dataset.batch_size} = global batch "
              f"{processes * config.dataset.batch_size}; {state.steps_per_epoch} steps per epoch, {state.total_steps} "
              f"steps in total (each process takes {config.dataset.batch_size} image(s) of every step)")
    val = f"; final validation loss {state.val_loss:.5f}" if state.val_loss is not None else ""
    epochs = state.step / state.steps_per_epoch if state.steps_per_epoch else state.epoch  # a cut run: a fraction
    print(f"trained {state.step} steps ({epochs:.3g} epoch{'' if epochs == 1 else 's'}) in {result.seconds:.1f} s{val}")
    if result.resumed_from:
        print(f"resumed from {result.resumed_from}")
    for path in result.saved:
        print(f"saved {path}")
    final = result.summary
    if final is not None and final.xy_grid:
        print(f"X/Y grid (epochs x LoRA weights): {config.output_dir / final.xy_grid}")
    if final is not None and len(final.epochs) > 1:
        print(f"suggested epoch: {final.suggested_file} — {final.reason}")
    if result.logdir:
        print(f"TensorBoard logs: {result.logdir}")
    return 0
