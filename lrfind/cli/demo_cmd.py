"""`lrfind demo`: probe -> study -> report -> final run -> kohya export on the example dataset."""

from __future__ import annotations

import argparse

HELP = {
    "out": "folder for studies/demo/, studies/demo_dataset/ and reports/demo.html",
    "trials": "trials of the demo study",
    "probe_steps": "steps of the demo's (Prodigy) probe",
    "progress": "show progress bars",
    "model": "built-in model: tiny-pretrained (trained on real photos; default), tiny (random init) or tiny-sdxl (SDXL, random init)",
}


def register(subparsers) -> None:
    from lrfind.cli.options import add_model_options
    from lrfind.demo import DemoConfig

    parser = subparsers.add_parser(
        "demo", help="every step end to end on the example dataset and a tiny built-in model (CPU, minutes)",
        description="Runs probe, a few-trial study, the report, the final run (with X/Y grid and suggested "
                    "epoch) and the kohya config export on the shipped example dataset with a built-in tiny "
                    "model, then prints where each output is. Nothing is downloaded.")
    add_model_options(parser, DemoConfig, help_texts=HELP)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lrfind.cli.options import collect_options
    from lrfind.config import build
    from lrfind.demo import DemoConfig, run_demo, summary_lines

    result = run_demo(build(DemoConfig, **collect_options(args, DemoConfig)))
    print("\n".join(summary_lines(result)))
    return 0
