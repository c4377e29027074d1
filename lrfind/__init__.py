"""lrfind: find the learning rate and LoRA hyperparameters for Stable Diffusion LoRA training.

The public API is lrfind.api (docs/api.md): `from lrfind import api; api.probe(cfg)`, api.study,
api.train, api.report, api.export_kohya. This package also re-exports the API's functions whose
names are free (train, export_kohya, train_config_from_study) and its config and result types;
probe, study and report are names of lrfind's subpackages, so those three are called as api.NAME.
Everything loads on first use (PEP 562): `import lrfind` and `lrfind --help` stay light (no torch).
"""

__version__ = "0.1.0"

PUBLIC_API = ("api", "train", "train_config_from_study", "export_kohya", "ProbeConfig", "StudyConfig", "TrainConfig",
              "ExportConfig", "ProbeReport", "StudyOutcome", "FinalRun", "ExportResult")


def __getattr__(name: str):
    if name in PUBLIC_API:
        import lrfind.api  # not `from lrfind import api`: its hasattr(lrfind, "api") would call this again

        api = globals()["api"]  # the import set it
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'lrfind' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC_API])
