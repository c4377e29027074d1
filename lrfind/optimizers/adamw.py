"""AdamW (torch.optim.AdamW): the optimizer the probe's unet_lr is measured for.

The probe's lr already is the AdamW lr (the measured correction is per probe optimizer, in its
plateau_factor), so AdamW's lr divisor and weight-decay factor are 1.
"""

from lrfind.optimizers.entry import OptimizerEntry, lr_summary, scaled_lr_rule

LR_DIVISOR = 1.0
WEIGHT_DECAY_FACTOR = 1.0

ENTRY = OptimizerEntry(
    name="AdamW",
    class_path="torch.optim:AdamW",
    state_slots=2,  # exp_avg, exp_avg_sq
    summary=lr_summary("AdamW"),
    # torch's AdamW on the CPU otherwise loops over the parameters one by one: on the 256 tensors of
    # an SD 1.5 LoRA that step took 120 ms against 35 ms fused (benchmarks/RESULTS.md, cheap trials).
    fused_kernel=True,
    lr_divisor=LR_DIVISOR,
    weight_decay_factor=WEIGHT_DECAY_FACTOR,
    lr_rule=scaled_lr_rule(LR_DIVISOR, WEIGHT_DECAY_FACTOR),
)
