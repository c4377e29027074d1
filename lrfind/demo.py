"""`lrfind demo`: every step end to end on the shipped example dataset and a built-in tiny model.

probe -> a few-trial study -> report -> final run (epochs, samples, X/Y grid, suggested epoch) ->
kohya config export -> the report again, now with the final run. CPU only, nothing downloaded, a
few minutes. Outputs follow the usual layout under --out: studies/demo/ (probe, study database,
trials, final run, kohya TOMLs), reports/demo.html, and the dataset copy in studies/demo_dataset/.
Rerunning the demo resumes the study instead of starting over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from lrfind.config import DatasetConfig, ModelConfig, StrictModel
from lrfind.export.files import ExportConfig
from lrfind.probe.config import ProbeConfig
from lrfind.study.config import StudyConfig

STUDY_NAME = "demo"


class DemoConfig(StrictModel):
    out: Path = Path(".")
    trials: int = Field(6, ge=1)
    probe_steps: int = Field(200, ge=8)  # the probe's own default, on every built-in
    progress: bool = False
    # the trained stand-in by default: its samples and X/Y grid show pictures, not noise
    model: Literal["tiny-pretrained", "tiny", "tiny-sdxl"] = "tiny-pretrained"


@dataclass
class DemoResult:
    outputs: list[tuple[str, Path]] = field(default_factory=list)  # (what, where)
    seconds: list[tuple[str, float]] = field(default_factory=list)  # (step, wall seconds)


class _Steps:
    """Times each step and prints one line when it ends."""

    def __init__(self, result: DemoResult):
        self.result = result

    def run(self, name: str, func, *args, **kwargs):
        print(f"[demo] {name} ...", flush=True)
        started = time.time()
        value = func(*args, **kwargs)
        self.result.seconds.append((name, time.time() - started))
        print(f"[demo] {name}: done in {self.result.seconds[-1][1]:.1f} s", flush=True)
        return value


def run_demo(cfg: DemoConfig) -> DemoResult:
    # lazy: lrfind --help loads this module (the parser's options); each step's modules load when it runs
    from lrfind.cache import TensorStore, check_cache_dir
    from lrfind.data.example import copy_example_dataset
    from lrfind.outputs import check_writable_dir

    check_writable_dir(cfg.out, "--out")
    cache_dir = check_cache_dir(None)
    result = DemoResult()
    steps = _Steps(result)
    study_dir = cfg.out / "studies" / STUDY_NAME
    dataset = cfg.out / "studies" / f"{STUDY_NAME}_dataset"
    if not dataset.is_dir():
        copy_example_dataset(dataset)
    result.outputs.append(("example dataset (kohya layout, real photos)", dataset))
    store = TensorStore(cache_dir)
    report = steps.run("probe (Prodigy, d*lr plateau)", _probe, cfg, dataset, study_dir, store)
    result.outputs.append(("probe report", study_dir / "probe.json"))
    result.outputs.append(("probe page (d*lr curve)", study_dir / "probe.html"))
    print(f"[demo] probe: unet_lr {report.unet_lr} ({report.status}, confidence {report.confidence})")
    outcome = steps.run(f"study ({cfg.trials} trials, Optuna + pruning)", _study, cfg, dataset, study_dir)
    for warning in outcome.warnings:  # what the study could not do (e.g. hold a small folder's images out)
        print(f"[demo] warning: {warning}")
    print(f"[demo] {outcome.recommendation.summary}")
    result.outputs.append(("study database (optuna-dashboard opens it)", study_dir.parent / f"{STUDY_NAME}.db"))
    result.outputs.append(("recommendation", study_dir / "recommendation.json"))
    steps.run("report", _report, cfg, study_dir)
    final = steps.run("final run (--from-study)", _final_run, dataset, study_dir, store, cfg.progress)
    result.outputs.append(("final LoRA (kohya format)", final.output_path))
    result.outputs.append(("suggested epoch's LoRA", final.suggested_file))
    result.outputs.append(("final run summary (epochs, suggested epoch)",
                           final.output_path.parent / f"{final.output_path.stem}_final.json"))
    if final.summary.xy_grid:
        result.outputs.append(("X/Y grid: epochs x LoRA weights", final.output_path.parent / final.summary.xy_grid))
    export = steps.run("kohya config export", _export, study_dir, dataset)
    result.outputs.append(("kohya sd-scripts config", export.config_path))
    result.outputs.append(("kohya dataset config", export.dataset_path))
    html = steps.run("report (with the final run)", _report, cfg, study_dir)
    result.outputs.append(("HTML report (open in a browser)", html))
    return result


# Each step imports lrfind.api when it runs: `lrfind --help` loads this module (the parser's options).


def _probe(cfg: DemoConfig, dataset: Path, study_dir: Path, store):
    from lrfind import api

    if (study_dir / "probe.json").is_file():
        print(f"[demo] reusing {study_dir / 'probe.json'}")
    return api.probe(ProbeConfig(dataset=DatasetConfig(train_dir=dataset, resolution=64, batch_size=1),
                                 model=ModelConfig(model=cfg.model), steps=cfg.probe_steps, out=study_dir,
                                 progress=cfg.progress), reuse=True, store=store)


def _study(cfg: DemoConfig, dataset: Path, study_dir: Path):
    from lrfind import api

    return api.study(StudyConfig(dataset=DatasetConfig(train_dir=dataset), name=STUDY_NAME,
                                 model=ModelConfig(model=cfg.model), space="tiny",
                                 n_trials=cfg.trials, out=study_dir, progress=cfg.progress))


def _report(cfg: DemoConfig, study_dir: Path) -> Path:
    from lrfind import api

    return api.report(STUDY_NAME, study_dir=study_dir, out=cfg.out / "reports" / f"{STUDY_NAME}.html")


def _final_run(dataset: Path, study_dir: Path, store, progress: bool):
    from lrfind import api

    config = api.train_config_from_study(STUDY_NAME, study_dir=study_dir, train_data_dir=dataset, progress=progress,
                                         sample_steps=10)
    return api.train(config, store=store)


def _export(study_dir: Path, dataset: Path):
    from lrfind import api

    return api.export_kohya(ExportConfig(name=STUDY_NAME, study_dir=study_dir, dataset=dataset,
                                         out=study_dir / "kohya"))


def summary_lines(result: DemoResult) -> list[str]:
    total = sum(s for _, s in result.seconds)
    lines = [f"lrfind demo finished in {total:.0f} s ("
             + ", ".join(f"{name.split(' (')[0]} {s:.0f} s" for name, s in result.seconds) + ")", "outputs:"]
    width = max(len(what) for what, _ in result.outputs)
    lines += [f"  {what:<{width}}  {Path(where).resolve()}" for what, where in result.outputs]
    return lines
