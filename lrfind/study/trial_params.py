"""One point of a search space (TrialParams) and how a trial asks Optuna for it (suggest). Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from lrfind.errors import ConfigError
from lrfind.network.types import network_type as network_type_entry
from lrfind.study.epoch_sweep import epoch_counts, sweeps
from lrfind.study.space import SearchSpace


def _three_digits(x: float) -> float:
    return float(f"{x:.3g}")


@dataclass(frozen=True)
class TrialParams:
    """One point of the space; field names are the Optuna parameter names."""

    network_dim: int
    network_alpha_fraction: float
    epochs: int
    repeats: Optional[int]  # None: the folders' repeats
    lr_multiplier: float
    optimizer: str
    lr_scheduler: str
    network_type: str = "lora"
    conv_dim_fraction: Optional[float] = None  # asked only of network types with convs
    lokr_factor: Optional[int] = None  # asked only of lokr

    @property
    def network_alpha(self) -> float:
        """fraction x dim, to 3 significant digits (a readable number; <= dim as fraction <= 1)."""
        return min(float(self.network_dim), _three_digits(self.network_alpha_fraction * self.network_dim))

    def to_params(self) -> dict:
        """The Optuna params dict (absent: repeats when the space keeps the folders' repeats, and
        the network options a trial's type was not asked)."""
        optional = ("repeats", "conv_dim_fraction", "lokr_factor")
        return {k: v for k, v in asdict(self).items() if not (k in optional and v is None)}

    @classmethod
    def from_params(cls, params: dict, space: SearchSpace) -> "TrialParams":
        """Back from a stored trial's params (e.g. FrozenTrial.params)."""
        names = ["network_dim", "network_alpha_fraction", "epochs", "lr_multiplier", "optimizer", "lr_scheduler"]
        if space.repeats is not None:
            names.append("repeats")
        missing = [n for n in names if n not in params]
        if missing:
            raise ConfigError(
                f"trial parameters {params} lack {', '.join(missing)}: the study was run with "
                "another search space; pass the same --space as when it ran"
            )
        return cls(
            network_dim=int(params["network_dim"]),
            network_alpha_fraction=float(params["network_alpha_fraction"]),
            epochs=int(params["epochs"]),
            repeats=int(params["repeats"]) if space.repeats is not None else None,
            lr_multiplier=float(params["lr_multiplier"]),
            optimizer=str(params["optimizer"]),
            lr_scheduler=str(params["lr_scheduler"]),
            network_type=str(params.get("network_type", "lora")),  # studies before issue #13: LoRA
            conv_dim_fraction=float(params["conv_dim_fraction"]) if "conv_dim_fraction" in params else None,
            lokr_factor=int(params["lokr_factor"]) if "lokr_factor" in params else None,
        )


def suggest(trial, space: SearchSpace, epoch_mode: str = "sample") -> TrialParams:
    """Ask an optuna.Trial for one point of `space` (same order and names every trial).

    epoch_mode "sweep": a trial whose scheduler allows it (lrfind.study.epoch_sweep) does not
    sample `epochs`; it trains the space's most epochs and reads the others off its curve.
    """
    lr_scheduler = space.lr_scheduler.suggest(trial, "lr_scheduler")
    swept = sweeps(epoch_mode, lr_scheduler, space_epoch_counts(space))
    values = dict(
        network_dim=space.network_dim.suggest(trial, "network_dim"),
        network_alpha_fraction=space.network_alpha_fraction.suggest(trial, "network_alpha_fraction"),
        epochs=space.epochs.highest if swept else space.epochs.suggest(trial, "epochs"),
        repeats=space.repeats.suggest(trial, "repeats") if space.repeats is not None else None,
        lr_multiplier=space.lr_multiplier.suggest(trial, "lr_multiplier"),
        optimizer=space.optimizer.suggest(trial, "optimizer"),
        lr_scheduler=lr_scheduler,
    )
    # Last, so that the other parameters are asked in the same order as before network types.
    network_type = space.network_type.suggest(trial, "network_type")
    entry = network_type_entry(network_type)
    conv = space.conv_dim_fraction if entry.adapts_convs else None
    factor = space.lokr_factor if entry.space_arg("lokr_factor") is not None else None
    return TrialParams(
        **values, network_type=network_type,
        conv_dim_fraction=conv.suggest(trial, "conv_dim_fraction") if conv is not None else None,
        lokr_factor=factor.suggest(trial, "lokr_factor") if factor is not None else None,
    )


def space_epoch_counts(space: SearchSpace) -> list[int]:
    """Every epoch count the space's `epochs` allows."""
    return epoch_counts(space.epochs.choices, space.epochs.range, space.epochs.step)
