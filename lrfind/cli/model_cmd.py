"""`lrfind model save MODEL DIR` and `lrfind model info MODEL`.

MODEL is `tiny` / `tiny-pretrained` / `tiny-sdxl` (the built-in models), a diffusers folder, or an SD 1.x or
SDXL .safetensors / .ckpt file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MODEL_HELP = ("`tiny`, `tiny-pretrained` or `tiny-sdxl` (built-in), a diffusers folder (with model_index.json), "
              "or an SD 1.x / SDXL .safetensors file")


def register(subparsers) -> None:
    parser = subparsers.add_parser("model", help="save a built-in model for other tools; inspect a model file")
    commands = parser.add_subparsers(dest="model_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _missing_action(parser))

    save = commands.add_parser(
        "save",
        help="write a model as a diffusers folder (and optionally one original-layout .safetensors)",
        description="Write MODEL as a diffusers folder DIR, so diffusers and kohya sd-scripts can run on "
        "exactly the same weights. Written to a temp folder and renamed: never half-written.",
    )
    save.add_argument("model", help=MODEL_HELP)
    save.add_argument("dir", type=Path, help="new (or empty) output folder")
    save.add_argument("--single-file", action="store_true", help="also write DIR/<name>.safetensors in the original layout (SD 1.x: CompVis, SDXL: SGM)")
    save.add_argument("--seed", type=int, default=0, help="random init seed of the tiny model (default 0)")
    save.add_argument("--allow-pickle", action="store_true", help="allow loading a .ckpt (weights only)")
    save.set_defaults(func=run_save)

    info = commands.add_parser("info", help="print a model's architecture and parameter counts")
    info.add_argument("model", help=MODEL_HELP)
    info.add_argument("--seed", type=int, default=0, help="seed of the tiny model (default 0)")
    info.add_argument("--allow-pickle", action="store_true", help="allow reading a .ckpt (weights only)")
    info.set_defaults(func=run_info)


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _model_config(args):
    from lrfind.config import ModelConfig, build

    return build(ModelConfig, "model", model=args.model, seed=args.seed, allow_pickle=args.allow_pickle)


def run_save(args) -> int:
    cfg = _model_config(args)
    from lrfind.models.export import check_new_folder, save_model_folder
    from lrfind.models.loading import load_components

    check_new_folder(args.dir)  # before the (possibly long) model load
    components = load_components(cfg, for_training=False)
    written = save_model_folder(components, args.dir, single_file=args.single_file)
    print(f"diffusers folder: {written['folder']}")
    if "single_file" in written:
        print(f"single file: {written['single_file']}")
    return 0


def run_info(args) -> int:
    cfg = _model_config(args)
    from lrfind.models.export import describe_model

    info = describe_model(cfg)
    print(f"name: {info['name']}")
    print(f"source: {info['source']}")
    print(f"family: {info['family']}")
    print(f"architecture: {info['architecture']}")
    if "prediction_type" in info:
        print(f"prediction type: {info['prediction_type']}")
    counts = info["parameters"]
    for part, count in counts.items():
        print(f"parameters {part}: {count:,}")
    print(f"parameters total: {sum(counts.values()):,}")
    return 0
