"""lrfind's public API: the five operations, each taking its config object and returning a typed
result. The CLI and the demo call these and nothing below them; a notebook can too (docs/api.md).

    probe(ProbeConfig)          -> ProbeReport     (OUT/probe.json, OUT/probe.html)
    study(StudyConfig)          -> StudyOutcome    (studies/NAME/recommendation.json, trials, database)
        study_workers(StudyConfig) -> exit code: the same study in --workers N local processes
    train(TrainConfig)          -> FinalRun        (the LoRA files, NAME_final.json, X/Y grid)
        train_config_from_study(NAME, ...) -> TrainConfig: the run a study recommends
    report(name)                -> Path            (reports/NAME.html)
    export_kohya(ExportConfig)  -> ExportResult    (kohya_config.toml, kohya_dataset.toml)

Shared objects (a loaded model's `components`, a scanned `dataset`, a latent/text cache `store`)
are optional: pass them to reuse what is loaded already, leave them out and each call loads its own.
Bad input raises lrfind.errors.LrfindError with one line naming the file or option and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.config import DatasetConfig, ModelConfig
from lrfind.export.files import ExportConfig, ExportResult
from lrfind.export.files import export_kohya as _export_kohya
from lrfind.final.from_study import from_study_values
from lrfind.final.run import FinalRun, train_lora
from lrfind.network.config import NetworkConfig
from lrfind.outputs import check_writable_file
from lrfind.probe.config import ProbeConfig
from lrfind.probe.probe import reuse_or_run_probe, run_probe
from lrfind.report.data import load_study_data
from lrfind.report.html import write_report
from lrfind.report.info import gather_info
from lrfind.study.config import StudyConfig
from lrfind.study.runner import StudyOutcome, run_study
from lrfind.study.workers import run_workers
from lrfind.training.config import TrainConfig
from lrfind.training.kohya_names import train_config


def probe(cfg: ProbeConfig, *, reuse: bool = False, components=None, dataset=None, store=None) -> ProbeReport:
    """Run the probe cfg describes; writes OUT/probe.json (and probe.html when a curve was analysed).

    reuse: return OUT/probe.json's report when it exists instead of probing again (a bad file is an
    LrfindError naming it and the field)."""
    if reuse:
        return reuse_or_run_probe(cfg, components=components, dataset=dataset, store=store)
    return run_probe(cfg, components=components, dataset=dataset, store=store)


def study(cfg: StudyConfig, *, progress: Optional[Callable[[str, bool], None]] = None) -> StudyOutcome:
    """Run (or resume) the study in this process; its recommendation is outcome.recommendation.

    It uses studies/NAME/probe.json when there is one, else probes first. progress: None, or a
    callable(text, transient) for live status lines (transient ones replace each other)."""
    return run_study(cfg, progress=progress)


def study_workers(cfg: StudyConfig, *, on_event: Callable[[str], None] = lambda text: None) -> int:
    """cfg.worker_count local worker processes on one study (`lrfind study --workers N`); returns
    their exit code. At 0 the last worker to finish wrote recommendation.json from every trial."""
    return run_workers(cfg, on_event=on_event)


def train(cfg: TrainConfig, *, components=None, dataset=None, store=None, callbacks: Sequence[Any] = ()) -> FinalRun:
    """One full LoRA training run (what `lrfind train` does); callbacks are extra loop callbacks."""
    return train_lora(cfg, components=components, dataset=dataset, store=store, callbacks=callbacks)


def train_config_from_study(name: str, *, study_dir: Optional[Path] = None, **overrides) -> TrainConfig:
    """The TrainConfig of study NAME's recommended full run (what `lrfind train --from-study NAME`
    starts from), with `overrides` (kohya's flat names, as `lrfind train` takes them: network_dim=16,
    max_train_epochs=4) on top; a bad value is one LrfindError line."""
    return train_config({**from_study_values(name, study_dir), **overrides}, f"the run study {name} recommends")


def report(name: str, *, study_dir: Optional[Path] = None, storage: Optional[str] = None,
           out: Optional[Path] = None, on_partial: Optional[Callable[[str], None]] = None) -> Path:
    """Write the study's self-contained HTML report (default reports/NAME.html); returns its path.

    study_dir: the study's folder (default studies/NAME); storage: its Optuna storage URL (default
    the sqlite file beside it). on_partial(why) is called when the study has not finished yet."""
    out = Path(out) if out is not None else Path("reports") / f"{name}.html"
    check_writable_file(out, "--out")
    data = load_study_data(name, storage, study_dir)
    path = write_report(out, gather_info(data))
    if data.partial and on_partial is not None:
        on_partial("the study is still running" if data.running else "the study has not finished")
    return path


def export_kohya(cfg: ExportConfig) -> ExportResult:
    """kohya sd-scripts' two TOMLs for the study's recommendation, and the command that runs them."""
    return _export_kohya(cfg)


__all__ = ["DatasetConfig", "ExportConfig", "ExportResult", "FinalRun", "ModelConfig", "NetworkConfig", "ProbeConfig",
           "ProbeReport", "StudyConfig", "StudyOutcome", "TrainConfig", "export_kohya", "probe", "report", "study", "study_workers", "train",
           "train_config_from_study"]
