"""`lrfind status NAME`: how far a study is (finished, pruned, failed, best, ETA) and its running trials.

Reads the study's storage only, so it works for a study running in another process or on another
machine (pass the same --storage) without disturbing it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "status", help="how far a (running) study is: trials finished, best, ETA, running trials",
        description="Prints one line for the study (finished/pruned/failed trials, best value and trial, ETA "
                    "under --n-trials or --timeout) and one per running trial (step, validation loss, ETA). "
                    "Reads the storage only.")
    parser.add_argument("name", metavar="NAME", help="study name (as given to `lrfind study --name`)")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage URL (default: studies/NAME.db or studies/NAME.journal beside --study-dir)")
    parser.add_argument("--study-dir", "--study_dir", dest="study_dir", type=Path, default=None,
                        help="the study's folder (default studies/NAME)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lrfind.report.data import default_storage_url, open_study
    from lrfind.study.progress import study_status

    study_dir = args.study_dir if args.study_dir is not None else Path("studies") / args.name
    study = open_study(args.name, args.storage or default_storage_url(args.name, study_dir))
    for line in study_status(study).lines():
        print(line)
    return 0
