"""The environment: the study's settings, its dataset, where it ran and what drew this report."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Optional

from lrfind.report.data import StudyData
from lrfind.report.sections.common import Fragment, esc, kv_table, number_text, section

Rows = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class EnvironmentInfo:
    study: Rows
    study_environment: Rows  # the study's `environment` attribute: where it ran
    report_environment: Rows  # versions drawing this report
    dataset_name: Optional[str]
    dataset: tuple[tuple[str, str, str, str], ...]  # folder, images, repeats, buckets
    dataset_images: int


def _versions() -> dict[str, str]:
    found = {}
    for package in ("lrfind", "optuna", "plotly", "pandas"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    found["python"] = platform.python_version()
    return found


def _dataset_rows(stats: Optional[dict]) -> tuple[tuple[str, str, str, str], ...]:
    if not stats:
        return ()
    rows = []
    for concept in stats.get("concepts", []):
        buckets = ", ".join(f"{b[0]}×{b[1]}: {n}" for b, n in concept.get("images_per_bucket", []))
        images = sum(n for _, n in concept.get("images_per_bucket", []))
        rows.append((concept.get("folder", ""), str(images), str(concept.get("repeats", "")), buckets))
    if stats.get("reg_images"):
        rows.append(("regularisation images", str(len(stats["reg_images"])), "", ""))
    return tuple(rows)


def _get_environment_info(data: StudyData) -> EnvironmentInfo:
    attrs = data.user_attrs
    environment = attrs.get("environment") or {}
    stats = attrs.get("dataset_stats")
    study_rows = [["study", data.name], ["storage", data.storage_url], ["study folder", str(data.study_dir)],
                  ["model", attrs.get("model")], ["CLIP model", attrs.get("clip_model")],
                  ["CLIP calibrated", attrs.get("clip_calibrated")], ["objective", attrs.get("objective")],
                  ["directions", ", ".join(data.directions)],
                  ["baseline val loss", attrs.get("baseline_val_loss")]]
    return EnvironmentInfo(
        study=tuple((k, number_text(v)) for k, v in study_rows if v is not None),
        study_environment=tuple((str(k), number_text(v)) for k, v in environment.items()),
        report_environment=tuple(_versions().items()),
        dataset_name=(stats or {}).get("name") or ((data.probe or {}).get("dataset") or {}).get("name"),
        dataset=_dataset_rows(stats),
        dataset_images=sum(n for c in (stats or {}).get("concepts", []) for _, n in c.get("images_per_bucket", [])),
    )


def environment_html(info: EnvironmentInfo) -> Fragment:
    dataset = ""
    if info.dataset:
        rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in info.dataset)
        dataset = (f"<h3>Dataset {esc(info.dataset_name or '')}</h3><p>{esc(info.dataset_images)} training "
                   "images</p><table class=\"trials left\"><tr><th>folder</th>"
                   f"<th>images</th><th>repeats</th><th>buckets (w×h: images)</th></tr>{rows}</table>")
    return section("environment", "Environment", "",
                   kv_table(info.study) + dataset + "<h3>Where the study ran</h3>"
                   + kv_table(info.study_environment) + "<h3>This report</h3>" + kv_table(info.report_environment))
