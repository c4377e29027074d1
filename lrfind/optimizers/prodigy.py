"""Prodigy (prodigyopt): lrfind's default probe optimizer, and a study choice with no lr to pick.

Its settings are its authors' advice for diffusion models (prodigyopt README): lr=1.0, d_coef=1.0
(lower, e.g. 0.5, to go slower), use_bias_correction=True, safeguard_warmup=True,
weight_decay=0.01, betas=(0.9, 0.99), decouple=True. The probe, the derived final-run settings and
the study's trials all run it so; a trial's lr_multiplier becomes its d_coef.

Plateau factor, measured by `benchmarks/probe_accuracy.py` (as DAdaptAdam's, lrfind.probe.derive;
benchmarks/RESULTS.md "Probe accuracy"), on kohya's full module set: plateau d*lr over the AdamW
grid best on `tiny-pretrained` (the stand-in with a real prior) for seeds 0..5 was 0.87, 0.74,
0.85, 0.54, 0.70, 0.62 -> geometric mean 0.71: the folk recipe "plateau = AdamW lr" is close. On
the random `tiny` (seeds 0..2: 0.94, 1.01, 1.27) the same factor lands 1.3-1.8x high, so every
probe of both models is within x2. Round one's 2.46 was measured on the narrow 176-module network.
SDXL keeps this factor: on `tiny-sdxl` (random, seed 0, `probe_accuracy.py --model tiny-sdxl`) the
plateau is 1.35x the grid optimum, beside random `tiny`'s 0.94-1.27 (with the factor 1.9x high, tiny
1.3-1.8x): no family difference beyond the seed-to-seed and random-vs-trained spread (docs/probe.md).
"""

from lrfind.optimizers.entry import LrInputs, OptimizerEntry, OptimizerValues

PLATEAU_OVER_ADAMW = 0.71
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
