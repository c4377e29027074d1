"""`lrfind export-kohya`: read a study's recommendation, write kohya's two TOMLs atomically."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator

from lrfind.artifacts.probe_report import ProbeSource, probe_source
from lrfind.artifacts.recommendation import Recommendation, read_recommendation
from lrfind.atomic import write_text
from lrfind.config import Seed, StrictModel
from lrfind.errors import ConfigError, DatasetError, ModelError
from lrfind.export.kohya_config import (concept_repeats, accelerate_command, kohya_dataset_toml,
                                        kohya_training_toml)
from lrfind.export.lycoris_preset import PRESET_FILE, kohya_preset_toml
from lrfind.models.builtin import is_builtin
from lrfind.models.families import ModelFamily, family_named
from lrfind.models.loading import model_family

CONFIG_FILE = "kohya_config.toml"
DATASET_FILE = "kohya_dataset.toml"


class ExportConfig(StrictModel):
    name: str
    out: Optional[Path] = None  # default: the study folder
    study_dir: Optional[Path] = None  # default studies/NAME
    model: Optional[str] = None  # default: the model the probe used, when it is a path on disk
    dataset: Optional[Path] = None  # default: the dataset the probe used
    mixed_precision: Literal["no", "fp16", "bf16"] = "fp16"  # kohya users train on GPUs
    save_every_n_epochs: int = Field(1, ge=1)
    seed: Seed = 42
    caption_extension: str = ".txt"

    @field_validator("name")
    @classmethod
    def _plain(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v):
            raise ValueError(f"study name {v!r}: use letters, digits, '.', '_' and '-'")
        return v

    def study_folder(self) -> Path:
        return self.study_dir if self.study_dir is not None else Path("studies") / self.name

    def out_folder(self) -> Path:
        return self.out if self.out is not None else self.study_folder()


@dataclass
class ExportResult:
    config_path: Path
    dataset_path: Path
    command: str
    warnings: list[str] = field(default_factory=list)
    preset_path: Optional[Path] = None  # a LyCORIS preset file the config names (lrfind.export.lycoris_preset)


def _dataset_dir(cfg: ExportConfig, source: ProbeSource, rec: Recommendation) -> Path:
    given = cfg.dataset if cfg.dataset is not None else source.dataset
    if given is None:
        raise ConfigError(f"{cfg.study_folder()}: no probe.json says where the dataset is; pass --dataset DIR")
    dataset = Path(given).resolve()
    missing = [folder for folder, _, _ in concept_repeats(rec) if not (dataset / folder).is_dir()]
    if missing:
        raise DatasetError(f"{dataset / missing[0]}: concept folder of the study not found; pass --dataset DIR "
                           "pointing at the dataset the study ran on")
    return dataset


def _model_path(cfg: ExportConfig, source: ProbeSource, warnings: list[str]) -> str:
    if cfg.model is not None:
        model = cfg.model
    else:
        model = str(source.model or "tiny")
    if Path(model).exists():
        return str(Path(model).resolve())
    if cfg.model is None or is_builtin(model):
        warnings.append(f"model {model!r} is not a file kohya can load; edit pretrained_model_name_or_path or "
                        "rerun with --model /path/to/sd15.safetensors")
    return model  # a hub id or a path on the training machine: kohya resolves it there


def _model_family(cfg: ExportConfig, source: ProbeSource) -> ModelFamily:
    """The family of --model when lrfind can tell it here (a built-in, a folder, a .safetensors
    file), else of the model the study ran on; SD 1.x when neither says (a hub id, a pickle, a
    file lrfind cannot read: kohya is the one to load it, and says so)."""
    for model in (cfg.model, source.model):
        try:
            family = model_family(model) if model else None
        except ModelError:
            family = None
        if family is not None:
            return family
    return family_named("sd1")


def export_kohya(cfg: ExportConfig) -> ExportResult:
    """Write OUT/kohya_config.toml and OUT/kohya_dataset.toml; return their paths and the command."""
    from lrfind.outputs import check_writable_dir  # lazy: lrfind --help loads this module

    check_writable_dir(cfg.out_folder(), "--out")
    study = cfg.study_folder()
    rec = read_recommendation(study / "recommendation.json",
                              f"no recommendation yet: run `lrfind study DATASET --name {cfg.name}` first "
                              "(or pass --study-dir where it wrote its files)")
    source = probe_source(study)
    warnings: list[str] = []
    dataset = _dataset_dir(cfg, source, rec)
    model = _model_path(cfg, source, warnings)
    family = _model_family(cfg, source)
    out = cfg.out_folder().resolve()
    config_path, dataset_path = out / CONFIG_FILE, out / DATASET_FILE
    rec, preset_path, preset_text = _with_kohya_preset(rec, out / PRESET_FILE, family.name)
    dataset_text = kohya_dataset_toml(rec, dataset_dir=dataset, caption_extension=cfg.caption_extension)
    config_text = kohya_training_toml(
        rec, model_path=model, dataset_dir=dataset, output_dir=out / "kohya_output", output_name=cfg.name,
        logging_dir=out / "kohya_logs", dataset_config=dataset_path, mixed_precision=cfg.mixed_precision,
        save_every_n_epochs=cfg.save_every_n_epochs, seed=cfg.seed, caption_extension=cfg.caption_extension,
        family=family,
    )
    if preset_text is not None:
        write_text(preset_path, preset_text)
    write_text(dataset_path, dataset_text)
    write_text(config_path, config_text)
    command = accelerate_command(config_path, dataset_path, script=family.kohya_train_script)
    return ExportResult(config_path, dataset_path, command, warnings,
                        preset_path if preset_text is not None else None)


def _with_kohya_preset(rec: Recommendation, preset_path: Path,
                       family: str) -> tuple[Recommendation, Path, Optional[str]]:
    """rec with network_args preset=preset_path when kohya needs lrfind's preset as a file."""
    train = rec.train_values
    args = train.get("network_args") if isinstance(train.get("network_args"), dict) else {}
    text = kohya_preset_toml(train.get("network_module"), args, family)
    if text is None:
        return rec, preset_path, None
    with_preset = {**train, "network_args": {**args, "preset": str(preset_path)}}
    return rec.model_copy(update={"train_values": with_preset}), preset_path, text
