"""Prodigy (prodigyopt): lrfind's default probe optimizer, and a study choice with no lr to pick.

Its settings are its authors' advice for diffusion models (prodigyopt README): lr=1.0, d_coef=1.0
(lower, e.g. 0.5, to go slower), use_bias_correction=True, safeguard_warmup=True,
weight_decay=0.01, betas=(0.9, 0.99), decouple=True. The probe, the derived final-run settings and
the study's trials all run it so; a trial's lr_multiplier becomes its d_coef.

Plateau factor, measured by `benchmarks/probe_accuracy.py` (as DAdaptAdam's, lrfind.probe.derive):
plateau d*lr over the AdamW grid best for seeds 0..5 was 2.92, 2.71, 2.63, 2.00, 1.95, 2.74 ->
geometric mean 2.46; held-out seeds 6, 7, 8 then gave probe lr / grid best 1.02, 0.88, 0.90. Over
nine seeds the plateau scatters x1.5: every probe lands within x2 of the optimum (9 of 9).
"""

from lrfind.optimizers.entry import LrInputs, OptimizerEntry, OptimizerValues

PLATEAU_OVER_ADAMW = 2.46
SETTINGS = {"d_coef": 1.0, "use_bias_correction": True, "safeguard_warmup": True, "weight_decay": 0.01,
            "betas": (0.9, 0.99), "decouple": True}


def _trial_values(inputs: LrInputs) -> OptimizerValues:
    """Prodigy estimates its own step size: neither the probe's lr nor the dim/alpha rescale applies;
    lr 1.0 for the text encoder too, as Prodigy shares one d across groups and refuses unequal lrs."""
    args = {**SETTINGS, "d_coef": inputs.multiplier}
    args["betas"] = list(args["betas"])  # JSON/TOML have no tuples; the optimizer converts
    return OptimizerValues(1.0, 1.0, args)


def _summary(unet_lr: float, args) -> str:
    return f"Prodigy (lr 1.0, d_coef {args.get('d_coef', 1.0):.2g})"


ENTRY = OptimizerEntry(
    name="Prodigy",
    class_path="prodigyopt:Prodigy",
    state_slots=4,  # exp_avg, exp_avg_sq, s, p0
    summary=_summary,
    adaptive=True,
    default_lr=1.0,
    default_args=SETTINGS,
    plateau_factor=1 / PLATEAU_OVER_ADAMW,
    lr_rule=_trial_values,
)
