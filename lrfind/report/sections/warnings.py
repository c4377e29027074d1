"""The warnings list: a partial study, a probe that did not converge, failed trials (with their
reasons), uncalibrated CLIP scores, and images the sample or X/Y grid could not read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lrfind.report.data import StudyData
from lrfind.report.sections.common import Fragment, ImageCell, esc

MAX_FAILED_LISTED = 20


@dataclass(frozen=True)
class ReportWarning:
    kind: str  # partial, probe, failed, clip, image: the item's CSS class warn-<kind>
    text: str
    trial: Optional[int] = None  # the failed trial's number


def _get_warnings_info(data: StudyData) -> list[ReportWarning]:
    warnings = []
    if data.running:
        running = sum(t.state.name in ("RUNNING", "WAITING") for t in data.trials)
        warnings.append(ReportWarning("partial", f"{running} trial(s) still running or waiting: this report "
                                                 "is partial; run `lrfind report` again later"))
    if data.recommendation is None:
        warnings.append(ReportWarning("partial", "no recommendation.json yet: the study has not finished; "
                                                 "the card shows the best trial so far"))
    probe = data.probe or {}
    if probe.get("status") and probe["status"] != "converged":
        warnings.append(ReportWarning("probe", f"probe not converged ({probe['status']}): {probe.get('advice', '')}"))
    failed = [t for t in data.trials if t.state.name == "FAIL"]
    for trial in failed[:MAX_FAILED_LISTED]:
        reason = trial.user_attrs.get("fail_reason") or "no reason recorded"
        warnings.append(ReportWarning("failed", f"trial {trial.number} failed: {reason}", trial=trial.number))
    if len(failed) > MAX_FAILED_LISTED:
        warnings.append(ReportWarning("failed", f"... and {len(failed) - MAX_FAILED_LISTED} more failed trials"))
    if data.user_attrs.get("clip_calibrated") is False:
        model = data.user_attrs.get("clip_model", "the CLIP model")
        warnings.append(ReportWarning("clip", f"CLIP scores are uncalibrated ({model} is not a trained CLIP): "
                                              "they rank these trials only and mean nothing in absolute terms"))
    return warnings


def unreadable_image_warnings(images: list[ImageCell]) -> list[ReportWarning]:
    """A warning per image the sample grid or X/Y grid could not read."""
    return [ReportWarning("image", f"{cell.file}: unreadable image ({cell.error}), shown as a placeholder; "
                                   "regenerate or delete it")
            for cell in images if cell.uri is None]


def warnings_html(warnings: list[ReportWarning]) -> Fragment:
    if not warnings:
        return Fragment("")
    items = "".join(f'<li class="warn-{esc(w.kind)}">{esc(w.text)}</li>' for w in warnings)
    return Fragment(f'<h2 id="warnings">Warnings</h2><ul class="warnings">{items}</ul>')
