"""Everything `lrfind report` reads about one study, loaded once: the Optuna study and its files.

The contract of what a study leaves behind is docs/study-artifacts.md. A study that is still
running (or was stopped) is fine: whatever exists is loaded and `StudyData.partial` says so.
Nothing here writes: a report must never change the study it describes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from lrfind.errors import ConfigError
from lrfind.secrets import mask_text, mask_url, remember
from lrfind.study.journal import JOURNAL_SUFFIX, journal_path, journal_url, open_journal
from lrfind.study.storage import engine_url

XY_GRID_GLOB = "*xy_grid*.png"  # final runs: NAME_xy_grid.png, epochs x LoRA weight (lrfind.final)
FINAL_GLOB = "*final.json"  # beside the grid, NAME_final.json: {"suggested_epoch": N, "reason": "..."}


@dataclass
class StudyData:
    name: str
    storage_url: str  # password masked: safe to show
    study_dir: Path
    study: Any  # optuna.Study (importances need it)
    trials: list  # optuna FrozenTrial, all states, by number
    directions: list[str]  # "minimize" / "maximize", one per objective
    user_attrs: dict
    probe: Optional[dict] = None  # probe.json, else the study's `probe` attribute (no curve)
    recommendation: Optional[dict] = None  # recommendation.json
    xy_grids: list[Path] = field(default_factory=list)
    final: Optional[dict] = None
    generated_at: str = ""

    @property
    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        return counts

    @property
    def running(self) -> bool:
        """Trials RUNNING or WAITING: some worker is (or was, if it died) still at it."""
        return any(trial.state.name in ("RUNNING", "WAITING") for trial in self.trials)

    @property
    def partial(self) -> bool:
        return self.running or self.recommendation is None

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1


def default_storage_url(name: str, study_dir: Path) -> str:
    """The storage `lrfind study` uses by default: sqlite beside the study's folder, or the journal
    there of a study run with several workers (StudyConfig.storage_url)."""
    sqlite_file = Path(study_dir).parent / (name + ".db")
    journal_file = Path(study_dir).parent / (name + JOURNAL_SUFFIX)
    if journal_file.is_file() and not sqlite_file.exists():
        return journal_url(journal_file)
    return f"sqlite:///{sqlite_file.as_posix()}"


def _check_sqlite_exists(url: str, name: str) -> None:
    """sqlalchemy creates a missing sqlite file on open: refuse instead of making an empty study."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        raise ConfigError(f"study database {path} does not exist; run `lrfind study DATASET --name {name}` "
                          "first, or pass --storage URL (and --study-dir) where the study ran")


def open_study(name: str, storage_url: str):
    """optuna.load_study with one-line errors: missing storage, unknown study (names listed)."""
    import optuna

    remember(storage_url)  # its password is masked in every message and log record from now on
    _check_sqlite_exists(storage_url, name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opened = engine_url(storage_url)
    try:
        journal = journal_path(storage_url)
        storage = open_journal(journal, create=False) if journal else optuna.storages.RDBStorage(opened)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any driver/connection error: one line, password masked
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"cannot open study storage {mask_url(storage_url)}: {mask_text(reason, storage_url)}; "
                          "check --storage (and that the database server runs)") from None
    names = optuna.study.get_all_study_names(storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ConfigError(f"no study named {name!r} in {mask_url(storage_url)} (studies there: {known}); "
                          "check the NAME or --storage")
    return optuna.load_study(study_name=name, storage=storage)


def _read_json(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not readable JSON ({err}); rerun the command that writes it") from None


def load_study_data(name: str, storage_url: Optional[str] = None,
                    out_dir: Optional[str | Path] = None) -> StudyData:
    """The study `name` from `storage_url` and its files under `out_dir` (default studies/NAME)."""
    study_dir = Path(out_dir) if out_dir is not None else Path("studies") / name
    url = storage_url or default_storage_url(name, study_dir)
    study = open_study(name, url)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    user_attrs = dict(study.user_attrs)
    probe = _read_json(study_dir / "probe.json") or user_attrs.get("probe")
    final_dirs = [study_dir] + sorted(p for p in study_dir.glob("*") if p.is_dir() and p.name != "trials")
    grids = [grid for folder in final_dirs for grid in sorted(folder.glob(XY_GRID_GLOB))]
    finals = (_read_json(path) for folder in final_dirs for path in sorted(folder.glob(FINAL_GLOB)))
    final = next((d for d in finals if d), None)
    return StudyData(
        name=name, storage_url=mask_url(url), study_dir=study_dir, study=study, trials=trials,
        directions=[d.name.lower() for d in study.directions], user_attrs=user_attrs, probe=probe,
        recommendation=_read_json(study_dir / "recommendation.json"), xy_grids=grids, final=final,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def trial_values(trial) -> Optional[list[float]]:
    """A finished trial's objective values (None when it has none, e.g. pruned or failed)."""
    values = trial.values
    return list(values) if values else None
