"""What a study checks before it runs: its output places can be written, a --dino folder holds a
DINO model, and its disk has room for the trials still to run (lrfind.outputs does the checking)."""

from __future__ import annotations

from lrfind.cache import check_cache_dir
from lrfind.outputs import Need, check_free_space, check_writable_dir, check_writable_file, study_output_bytes
from lrfind.scoring.dino import check_dino_folder
from lrfind.study.config import StudyConfig
from lrfind.study.storage import sqlite_path

LORA_PARAMS_PER_RANK = "lora_parameters_per_rank"  # study attribute, set with the baseline


def check_output_places(cfg: StudyConfig) -> None:
    """The study folder, the cache and a sqlite database file can be written (before anything runs)."""
    check_writable_dir(cfg.out_dir(), "--out" if cfg.out is not None else "the study folder (--out)")
    check_cache_dir(cfg.cache_dir)
    database = sqlite_path(cfg.storage_url())
    if database is not None:
        check_writable_file(database, "--storage" if cfg.storage else "the study database (--storage)")


def check_input_models(cfg: StudyConfig) -> None:
    """A --dino folder is a DINO/ViT model with weights: refused in one line before the study's
    database is opened or anything trains (the weights themselves load with the base model)."""
    if cfg.dino is not None:
        check_dino_folder(cfg.dino, cfg.model.allow_pickle)


def check_study_space(cfg: StudyConfig, study, ctx, finished: int) -> None:
    """Room under the study folder for the trials still to run: a LoRA at the space's largest dim
    and the samples per trial."""
    per_rank = study.user_attrs.get(LORA_PARAMS_PER_RANK)
    if per_rank is None:  # a study begun before lrfind recorded it
        return
    largest = int(per_rank * ctx.space.network_dim.highest)
    remaining = max(cfg.n_trials - finished, 0)
    samples = len(ctx.prompts) if ctx.prompts else 0  # prompts are set where trials draw samples
    need = study_output_bytes(remaining, largest, samples, ctx.space.fixed.resolution)
    check_free_space([Need(cfg.out_dir(), need, "--out")])
