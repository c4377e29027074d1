"""DAdaptAdam (dadaptation), the folk recipe's probe optimizer; "DAdaptation" is its alias here.

Older kohya versions mapped "DAdaptation" to `dadaptation.DAdaptAdam` (the folk recipe's
"DAdaptation, lr=1.0" comes from then); current kohya maps it to the experimental
`DAdaptAdamPreprint`. lrfind keeps the maintained DAdaptAdam.

Plateau factor, measured by `benchmarks/probe_accuracy.py` (issue #4, benchmarks/RESULTS.md "Probe
accuracy"; the protocol is in lrfind.probe.derive's docstring): the plateau d*lr over the AdamW grid
best for seeds 0..5 was 13.4, 6.74, 8.03, 4.12, (67.3), 5.03 -> geometric mean 6.85 (seed 4, in
brackets, is a staircase the probe flagged with confidence 0.51 and is left out: with it the mean
is 10.0), so the folk recipe "plateau = AdamW lr" is ~7x too high. Held-out seeds 6, 7, 8 then gave
probe lr / grid best 1.38, 1.36, 4.24; over nine seeds the plateau scatters x7 (4.1..29, runs all
"converged"): 7 of 9 probes land within x2. Measured on the tiny random-init model only.
"""

from lrfind.optimizers.entry import OptimizerEntry, lr_summary

PLATEAU_OVER_ADAMW = 6.85

ENTRY = OptimizerEntry(
    name="DAdaptAdam",
    class_path="dadaptation:DAdaptAdam",
    state_slots=3,  # exp_avg, exp_avg_sq, s
    summary=lr_summary("DAdaptAdam"),
    aliases=("DAdaptation",),
    adaptive=True,
    default_lr=1.0,
    default_args={"decouple": True},  # AdamW-style decoupled weight decay, as the probe runs it
    plateau_factor=1 / PLATEAU_OVER_ADAMW,
)
