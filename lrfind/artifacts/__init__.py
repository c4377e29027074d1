"""The files lrfind writes for other packages (and other tools) to read, as typed, versioned models.

Each artifact is a frozen pydantic model in its own module with `to_json()` / `from_json()` and a
`read_<artifact>(path)` that turns a bad file into one LrfindError line naming the file and the
field. The JSON keys are those earlier lrfind versions wrote (plus `schema_version`), so old files
read as version 1 and other tools keep reading new ones. Layer 0: pydantic and the stdlib only.
"""

from lrfind.artifacts.final_summary import EpochRow, FinalSummary, read_final_summary
from lrfind.artifacts.probe_report import (DatasetSummary, DerivedLrs, ProbeReport, ProbeSource, RangeTestResult,
                                           read_probe_report)
from lrfind.artifacts.recommendation import (Agreement, Closeness, ConceptRepeat, Recommendation,
                                             read_recommendation)
from lrfind.artifacts.trial_metrics import FullRunSteps, TrialMetrics, read_trial_metrics

__all__ = [
    "Agreement", "Closeness", "ConceptRepeat", "DatasetSummary", "DerivedLrs", "EpochRow", "FinalSummary",
    "FullRunSteps", "ProbeReport", "ProbeSource", "RangeTestResult", "Recommendation", "TrialMetrics",
    "read_final_summary", "read_probe_report", "read_recommendation", "read_trial_metrics",
]
