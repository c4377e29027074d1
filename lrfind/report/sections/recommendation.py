"""The recommendation card: the settings to train with (from recommendation.json, else a
provisional recommend() on the trials so far), the step math, and the commands to run next."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional

from lrfind.artifacts.probe_report import ProbeReport
from lrfind.errors import LrfindError
from lrfind.jsonfiles import finite
from lrfind.network.kinds import network_label
from lrfind.report.data import StudyData
from lrfind.report.sections.common import Fragment, esc, kv_table, number_text
from lrfind.study.recommend import TrialRecord, recommend
from lrfind.study.space import SearchSpace
from lrfind.study.stats import DatasetStats
from lrfind.training.run_options import RUN_WIDE, RunOptions

KOHYA_FOLDER = "kohya"  # where the card's export-kohya command writes the two TOMLs


@dataclass(frozen=True)
class NextCommands:
    train: str  # lrfind train --from-study
    export: str  # lrfind export-kohya
    accelerate: str  # kohya's trainer on the exported TOMLs


@dataclass(frozen=True)
class TopTrial:
    trial: int
    value: Optional[float]


@dataclass(frozen=True)
class Agreement:
    """Whether the top trials agree on one setting."""
    name: str
    values: list
    agree: bool


@dataclass(frozen=True)
class RecommendationInfo:
    available: bool
    commands: NextCommands
    reason: str = ""  # why there is no card (available False)
    provisional: bool = False  # recommend() on the trials so far: no recommendation.json yet
    trial_number: Optional[int] = None
    value: Optional[float] = None
    confidence: Optional[str] = None
    settings: tuple[tuple[str, str], ...] = ()
    steps_math: str = ""
    summary: str = ""
    top: tuple[TopTrial, ...] = ()
    relative_gap: Optional[float] = None
    agreement: tuple[Agreement, ...] = ()


def _provisional_recommendation(data: StudyData) -> Optional[dict]:
    """recommend() on the trials so far, for a study with no recommendation.json yet."""
    attrs = data.user_attrs
    if data.multi_objective or not all(attrs.get(k) for k in ("space", "dataset_stats")) or not data.probe:
        return None
    try:
        records = [TrialRecord.from_frozen_trial(t) for t in data.trials]
        space = SearchSpace(**attrs["space"])
        probe, every_image = ProbeReport.from_dict(data.probe), DatasetStats.from_dict(attrs["dataset_stats"])
        # as the study recommends: the trials' steps from the images they trained on (held-out
        # ones left out), the full run's from every image
        trained = attrs.get("trained_dataset_stats")
        stats = DatasetStats.from_dict(trained) if trained else every_image
        return recommend(records, space, probe, stats, data.directions[0], final_stats=every_image).to_dict()
    except (LrfindError, ValueError, TypeError, KeyError):
        return None  # nothing completed yet, or attributes of another version: the card says so


def _settings_rows(rec: dict) -> tuple[tuple[str, str], ...]:
    values = rec.get("train_values", {})
    module, args = values.get("network_module") or "networks.lora", values.get("network_args") or {}
    network = " ".join([network_label(module, args) + ":", module, *(f"{k}={v}" for k, v in args.items())])
    rows = [["network", network], ["network_dim", rec.get("network_dim")], ["network_alpha", rec.get("network_alpha")],
            ["epochs", rec.get("epochs")], ["optimizer", rec.get("optimizer")],
            ["unet_lr", rec.get("unet_lr")],
            ["text_encoder_lr", rec.get("text_encoder_lr") if rec.get("text_encoder_lr") is not None
             else "not trained (unet only)"],
            ["lr_scheduler", rec.get("lr_scheduler")],
            ["optimizer_args", ", ".join(f"{k}={v}" for k, v in rec.get("optimizer_args", {}).items()) or None],
            ["resolution", values.get("resolution")], ["train_batch_size", values.get("train_batch_size")],
            ["total steps", rec.get("total_steps")]]
    rows += _run_option_rows(values)
    for concept in rec.get("concept_repeats", []):
        rows.append([f"repeats of {concept.get('folder')}",
                     f"{concept.get('repeats')} (folder name {concept.get('folder_name')})"])
    return tuple((name, number_text(value)) for name, value in rows if value is not None)


def _run_option_rows(values: dict) -> list[list]:
    """The study's run-wide options (lrfind study --clip-skip 2 ...) that are not train's defaults."""
    defaults = RunOptions().model_dump(mode="json")
    shown = ("resolution", "train_batch_size")  # always in the table above
    return [[name, values[name]] for name in RUN_WIDE
            if name not in shown and name in values and values[name] != defaults[name]]


def _commands(data: StudyData) -> NextCommands:
    source = (data.probe or {}).get("source", {})
    dataset = str(source.get("dataset") or "DATASET")
    kohya_dir = (data.study_dir / KOHYA_FOLDER).resolve()
    return NextCommands(
        train=f"lrfind train {shlex.quote(dataset)} --from-study {shlex.quote(data.name)}",
        export=f"lrfind export-kohya {shlex.quote(data.name)} --out {shlex.quote(str(kohya_dir))}",
        # kohya's train_network.py runs from its own folder: absolute paths keep the line exact
        accelerate=("accelerate launch --num_cpu_threads_per_process 1 train_network.py "
                    f"--config_file {shlex.quote(str(kohya_dir / 'kohya_config.toml'))} "
                    f"--dataset_config {shlex.quote(str(kohya_dir / 'kohya_dataset.toml'))}"),
    )


def _get_recommendation_info(data: StudyData) -> RecommendationInfo:
    rec, provisional = data.recommendation, False
    if rec is None:
        rec, provisional = _provisional_recommendation(data), True
    if rec is None:
        return RecommendationInfo(available=False, commands=_commands(data),
                                  reason="no recommendation yet: no completed trial (or the study has not written "
                                         "recommendation.json); let `lrfind study` run more trials")
    closeness = rec.get("closeness", {})
    return RecommendationInfo(
        available=True, provisional=provisional, trial_number=rec.get("trial_number"),
        value=finite(rec.get("value")), confidence=rec.get("confidence"),
        settings=_settings_rows(rec), steps_math=rec.get("steps_math", ""), summary=rec.get("summary", ""),
        top=tuple(TopTrial(trial=t[0], value=finite(t[1])) for t in closeness.get("top", [])),
        relative_gap=finite(closeness.get("relative_gap")),
        agreement=tuple(Agreement(name=name, values=list(a.get("values", [])), agree=bool(a.get("agree")))
                        for name, a in rec.get("agreement", {}).items()),
        commands=_commands(data),
    )


def recommendation_html(rec: RecommendationInfo) -> Fragment:
    commands = rec.commands
    run_next = (
        "<p>Train the final LoRA with lrfind:</p>"
        f"<pre><code>{esc(commands.train)}</code></pre>"
        "<p>Or with kohya sd-scripts: write its config files, then run its trainer from its folder:</p>"
        f"<pre><code>{esc(commands.export)}\n{esc(commands.accelerate)}</code></pre>")
    if not rec.available:
        return Fragment(f'<h2 id="recommendation">Recommendation</h2><div class="card"><p>{esc(rec.reason)}</p></div>')
    title = "Best so far (provisional)" if rec.provisional else "Recommendation"
    top = ", ".join(f"trial {t.trial}: {t.value:.4g}" for t in rec.top if t.value is not None)
    value = f"{rec.value:.4g}" if rec.value is not None else "—"
    return Fragment(
        f'<h2 id="recommendation">{esc(title)}</h2><div class="card">'
        f"<p><b>From trial {esc(rec.trial_number)}</b> (objective {esc(value)}), "
        f"confidence <b>{esc(rec.confidence)}</b>.</p>"
        f"{kv_table(rec.settings)}"
        f"<p><b>Step math:</b> {esc(rec.steps_math)}</p>"
        f"<p class=\"note\">{esc(rec.summary)}</p>"
        + (f"<p class=\"note\">Top trials: {esc(top)}.</p>" if top else "")
        + run_next + "</div>")
