"""DAdaptAdam (dadaptation), the folk recipe's probe optimizer; "DAdaptation" is its alias here.

Older kohya versions mapped "DAdaptation" to `dadaptation.DAdaptAdam` (the folk recipe's
"DAdaptation, lr=1.0" comes from then); current kohya maps it to the experimental
`DAdaptAdamPreprint`. lrfind keeps the maintained DAdaptAdam.

Plateau factor, measured by `benchmarks/probe_accuracy.py` (issue #4 and #15, benchmarks/RESULTS.md
"Probe accuracy"; the protocol is in lrfind.probe.derive's docstring), on kohya's full module set:
the plateau d*lr over the AdamW grid best on `tiny-pretrained` for seeds 0..5 was 1.31, 1.06,
0.53, 0.27, 0.40, 0.40 -> geometric mean 0.56; with it 4 of 6 probes land within x2 (2.3x high and
2.1x low miss). On the random `tiny` the plateau is 4.7-6.5x the optimum (round one, narrow network:
4.1-29x, factor 6.85), 8-11x high with this factor: DAdaptAdam's plateau depends on the model far
more than Prodigy's, which is why Prodigy is the default probe. On random `tiny-sdxl` (seed 0) it is
3.55x (6.3x high with the factor): inside the same spread, so SDXL keeps this factor too.
"""

from lrfind.optimizers.entry import OptimizerEntry, lr_summary

PLATEAU_OVER_ADAMW = 0.56

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
