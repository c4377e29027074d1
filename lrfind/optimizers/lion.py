"""Lion (lion-pytorch), as kohya's --optimizer_type Lion.

Lion's sign update has a larger norm than Adam's: its authors advise a 3-10x smaller lr, the folk
recipe takes the low end (lr / 3); and 3-10x the AdamW weight decay, so that lr x wd, the
effective decay, stays the same: 3 matches dividing the lr by 3.
"""

from lrfind.optimizers.entry import OptimizerEntry, lr_summary, scaled_lr_rule

LR_DIVISOR = 3.0
WEIGHT_DECAY_FACTOR = 3.0

ENTRY = OptimizerEntry(
    name="Lion",
    class_path="lion_pytorch:Lion",
    state_slots=1,  # exp_avg
    summary=lr_summary("Lion"),
    lr_divisor=LR_DIVISOR,
    weight_decay_factor=WEIGHT_DECAY_FACTOR,
    lr_rule=scaled_lr_rule(LR_DIVISOR, WEIGHT_DECAY_FACTOR),
)
