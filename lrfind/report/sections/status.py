"""The page's head: the study's name, its trial counts, and the banner of a partial report."""

from __future__ import annotations

from dataclasses import dataclass

from lrfind.report.data import StudyData
from lrfind.report.sections.common import Fragment, esc


@dataclass(frozen=True)
class StatusInfo:
    name: str
    running: bool
    partial: bool
    has_recommendation: bool
    states: dict[str, int]  # trial state name -> how many
    text: str
    generated_at: str
    storage: str  # password masked


def _get_status_info(data: StudyData) -> StatusInfo:
    states = data.states
    parts = [f"{n} {state.lower()}" for state, n in sorted(states.items())]
    return StatusInfo(name=data.name, running=data.running, partial=data.partial,
                      has_recommendation=data.recommendation is not None, states=states,
                      text=f"{len(data.trials)} trials: " + (", ".join(parts) or "none yet"),
                      generated_at=data.generated_at, storage=data.storage_url)


def status_html(title: str, status: StatusInfo) -> Fragment:
    parts = [f"<h1>{esc(title)}</h1>",
             f'<p class="meta">{esc(status.text)} · storage {esc(status.storage)} · '
             f'generated {esc(status.generated_at)}</p>']
    if status.partial:
        why = ("the study is still running" if status.running
               else "the study has not finished (no recommendation.json)")
        parts.append(f'<p class="banner" id="partial-banner">Partial report: {esc(why)}. '
                     "Run <code>lrfind report</code> again later for the final one.</p>")
    return Fragment("\n".join(parts))
