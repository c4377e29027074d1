"""`lrfind report NAME`: one self-contained HTML page about a study (also while it still runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write one self-contained HTML report of a study",
        description="Reads the study's database and its folder (probe.json, recommendation.json, trial "
                    "samples) and writes one HTML file that works offline. A study still running gives a "
                    "partial report that says so.")
    parser.add_argument("name", metavar="NAME", help="study name (as given to `lrfind study --name`)")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage URL (default sqlite:///studies/NAME.db, beside --study-dir)")
    parser.add_argument("--out", type=Path, default=None, help="HTML file to write (default reports/NAME.html)")
    parser.add_argument("--study-dir", type=Path, default=None,
                        help="the study's folder with probe.json and trials/ (default studies/NAME)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lrfind import api

    path = api.report(args.name, study_dir=args.study_dir, storage=args.storage, out=args.out,
                      on_partial=lambda why: print(f"partial report ({why}):"))
    print(path)
    return 0
