"""A probe report with a given lr, dim and alpha, for tests of what reads one (trial values, the
recommendation, the probe point): the derived lrs follow the probe's own rules (probe.derive)."""

from __future__ import annotations

from lrfind.artifacts.probe_report import DerivedLrs, ProbeReport
from lrfind.optimizers import optimizer_entry
from lrfind.probe.derive import TEXT_ENCODER_FRACTION, TEXT_ENCODER_RANGE


def probe_with_lr(unet_lr: float | None, network_dim=8, network_alpha=8.0, **fields) -> ProbeReport:
    """unet_lr None: a probe that found no lr (status, e.g. "stuck_at_d0", in fields)."""
    derived = None
    if unet_lr is not None:
        lion = optimizer_entry("Lion")
        derived = DerivedLrs(unet_lr=unet_lr, adamw_lr=unet_lr, lion_lr=unet_lr / lion.lr_divisor,
                             lion_weight_decay_factor=lion.weight_decay_factor,
                             text_encoder_lr=unet_lr * TEXT_ENCODER_FRACTION,
                             text_encoder_lr_range=tuple(unet_lr * f for f in TEXT_ENCODER_RANGE),
                             prodigy=optimizer_entry("Prodigy").run_settings())
    return ProbeReport(network_dim=network_dim, network_alpha=network_alpha, derived=derived, **fields)
