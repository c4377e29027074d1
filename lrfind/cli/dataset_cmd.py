"""`lrfind dataset check DATASET`, `lrfind dataset tags DATASET` (lrfind.cli.tags_cmd) and `lrfind dataset example DEST`.

Options take our spelling (`--batch-size`) and kohya sd-scripts' (`--train_batch_size`), so a
kohya command line can be pasted in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lrfind.cli.tags_cmd import add_tags_parser


def _add_check_parser(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser(
        "check",
        help="scan a kohya-layout dataset and print concepts, captions, buckets and steps",
        description="Scan a kohya-layout dataset (DATASET/10_name/image.png + image.txt, 10 = repeats), "
        "check every image and caption, and print per-folder counts, caption token lengths, the "
        "aspect-ratio bucket distribution and the steps per epoch.",
    )
    check.add_argument("dataset", type=Path, metavar="DATASET", help="folder holding the `N_name` subfolders")
    check.add_argument("--caption-extension", "--caption_extension", dest="caption_extension", default=".txt", metavar="EXT",
                       help="caption file extension (default .txt; kohya's own default is .caption)")
    check.add_argument("--reg-dir", "--reg_dir", "--reg_data_dir", dest="reg_dir", type=Path, default=None, metavar="DIR",
                       help="regularisation images folder, same layout")
    check.add_argument("--resolution", default=512, metavar="PX",
                       help="training resolution, multiple of 64; kohya's 512,512 works too (default 512)")
    check.add_argument("--batch-size", "--batch_size", "--train_batch_size", dest="batch_size", type=int, default=1, metavar="N",
                       help="batch size for the step count (default 1)")
    check.add_argument("--epochs", "--max_train_epochs", dest="epochs", type=int, default=1, metavar="N",
                       help="epochs for the total step count (default 1)")
    check.add_argument("--min-bucket-reso", "--min_bucket_reso", dest="min_bucket_reso", type=int, default=None, metavar="PX",
                       help="smallest bucket side (default min(256, resolution))")
    check.add_argument("--max-bucket-reso", "--max_bucket_reso", dest="max_bucket_reso", type=int, default=None, metavar="PX",
                       help="largest bucket side (default max(1024, resolution))")
    check.add_argument("--bucket-reso-steps", "--bucket_reso_steps", dest="bucket_reso_steps", type=int, default=64, metavar="PX",
                       help="bucket side step in pixels (default 64)")
    check.add_argument("--bucket-no-upscale", "--bucket_no_upscale", dest="bucket_no_upscale", action="store_true",
                       help="per-image buckets, never upscaling (kohya's --bucket_no_upscale)")
    check.add_argument("--no-bucket", "--no_bucket", dest="enable_bucket", action="store_false",
                       help="no aspect-ratio buckets: every image is cropped to resolution x resolution")
    check.add_argument("--enable_bucket", dest="enable_bucket", action="store_true", help=argparse.SUPPRESS)
    check.add_argument("--strict-image-size", dest="strict_image_size", action="store_true",
                       help="refuse images that need more than 2x upscaling into their bucket (kohya trains them; "
                       "without this they only warn)")
    check.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    check.set_defaults(func=run)


def register(subparsers: argparse._SubParsersAction) -> None:
    dataset = subparsers.add_parser("dataset", help="check kohya-layout datasets, show and edit caption tags",
                                    description="Inspect kohya-layout datasets.")
    sub = dataset.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    _add_check_parser(sub)
    add_tags_parser(sub)
    example = sub.add_parser("example", help="copy the small example dataset shipped with lrfind",
                             description="Copy the example dataset (real photos, kohya layout) to DEST.")
    example.add_argument("dest", type=Path, metavar="DEST", help="folder to create (must not exist yet)")
    example.set_defaults(func=run_example)

    def show_help(_args: argparse.Namespace) -> int:
        dataset.print_help()
        return 2

    dataset.set_defaults(func=show_help)


def run(args: argparse.Namespace) -> int:
    from lrfind.config import DatasetConfig, build
    from lrfind.data.check import build_check_report, render_check_report
    from lrfind.data.kohya import scan_dataset
    from lrfind.data.problems import DatasetProblems
    from lrfind.errors import ConfigError, DatasetError

    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    cfg = build(
        DatasetConfig,
        train_dir=args.dataset,
        reg_dir=args.reg_dir,
        caption_extension=args.caption_extension,
        resolution=args.resolution,
        batch_size=args.batch_size,
        enable_bucket=args.enable_bucket,
        min_bucket_reso=args.min_bucket_reso,
        max_bucket_reso=args.max_bucket_reso,
        bucket_reso_steps=args.bucket_reso_steps,
        bucket_no_upscale=args.bucket_no_upscale,
        strict_image_size=args.strict_image_size,
    )
    try:
        dataset = scan_dataset(cfg, log_warnings=False)  # the report lists the warnings itself
    except DatasetProblems as found:
        _print_problems(found, args.json)
        raise DatasetError(
            f"{len(found.fatal)} file(s) in {found.dataset} cannot be trained (listed above): fix or delete them, "
            "then run the check again"
        ) from None
    from lrfind.models.tokenizer import count_tokens  # imports transformers: only once the scan passed

    report = build_check_report(dataset, cfg.resolution, cfg.batch_size, count_tokens, epochs=args.epochs)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_check_report(report), end="")
    return 0


def _print_problems(found, as_json: bool) -> None:
    from dataclasses import asdict

    from lrfind.data.check import render_problems

    if as_json:
        print(json.dumps({"dataset": str(found.dataset), "problems": [asdict(p) for p in found.problems]}, indent=2))
    else:
        print("\n".join(render_problems(found.problems, str(found.dataset))))


def run_example(args: argparse.Namespace) -> int:
    from lrfind.data.example import copy_example_dataset

    dest = copy_example_dataset(args.dest)
    print(f"example dataset copied to {dest}")
    print(f"next: lrfind dataset check {dest}")
    return 0
