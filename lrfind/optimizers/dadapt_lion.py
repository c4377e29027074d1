"""DAdaptLion (dadaptation): D-Adaptation's Lion. Trains, but neither probes nor is offered in a study."""

from lrfind.optimizers.entry import OptimizerEntry, lr_summary

ENTRY = OptimizerEntry(
    name="DAdaptLion",
    class_path="dadaptation:DAdaptLion",
    state_slots=2,  # exp_avg, s
    summary=lr_summary("DAdaptLion"),
    adaptive=True,
    default_lr=1.0,
)
