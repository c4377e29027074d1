"""lrfind: find the learning rate and LoRA hyperparameters for Stable Diffusion LoRA training.

The public API (docs/api.md): lrfind.probe, lrfind.study, lrfind.train, lrfind.report,
lrfind.export_kohya and their config and result types, from lrfind.api. They load on first use
(PEP 562), so `import lrfind` and `lrfind --help` stay light (no torch).
"""

__version__ = "0.1.0"

PUBLIC_API = ("probe", "study", "train", "report", "export_kohya", "ProbeConfig", "StudyConfig", "TrainConfig",
              "ExportConfig", "ProbeReport", "StudyOutcome", "FinalRun", "ExportResult")


def __getattr__(name: str):
    if name in PUBLIC_API:
        from lrfind import api

        return getattr(api, name)
    raise AttributeError(f"module 'lrfind' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC_API])
