"""The kinds of network a study can choose between, as kohya's --network_module / --network_args. Pure.

    lora           networks.lora                     kohya's LoRA (attention, MLP, proj_in/out)
    locon          networks.lora conv_dim conv_alpha kohya's LoCon ("LoRA-C3Lier"): + ResNet 3x3 convs
    lycoris_locon  lycoris.kohya algo=locon          LyCORIS LoCon, preset full (+ conv_in/out, time embedding)
    loha           lycoris.kohya algo=loha           LyCORIS LoHa (Hadamard product of two low-rank pairs)
    lokr           lycoris.kohya algo=lokr [factor]  LyCORIS LoKr (Kronecker product)

Conv layers get conv_dim = round(conv_dim_fraction x dim) (at least 1) and conv_alpha = the same
alpha/dim fraction as the linear layers. Without a fraction each kind keeps its own default: kohya's
LoCon then uses conv_dim = dim (lycoris' default, so both LoCons are comparable), the LyCORIS kinds
pass no conv_dim (lycoris: conv_dim = dim, conv_alpha = alpha).
"""

from __future__ import annotations

from typing import Any, Optional

NETWORK_KINDS = ("lora", "locon", "lycoris_locon", "loha", "lokr")
CONV_KINDS = ("locon", "lycoris_locon", "loha", "lokr")  # those whose convs a conv_dim_fraction sets
LYCORIS_ALGOS = {"lycoris_locon": "locon", "loha": "loha", "lokr": "lokr"}
LABELS = {"lora": "LoRA", "locon": "LoCon (kohya)", "lycoris_locon": "LoCon (LyCORIS)", "loha": "LoHa",
          "lokr": "LoKr"}


def conv_values(dim: int, alpha: float, conv_dim_fraction: float) -> tuple[int, float]:
    """(conv_dim, conv_alpha) for a fraction of dim; conv_alpha keeps alpha/dim (3 digits)."""
    conv_dim = max(1, round(conv_dim_fraction * dim))
    return conv_dim, float(f"{conv_dim * alpha / dim:.3g}")


def network_values(kind: str, dim: int, alpha: float, conv_dim_fraction: Optional[float] = None,
                   lokr_factor: Optional[int] = None) -> dict[str, Any]:
    """TrainConfig's network_module and network_args for one kind of network."""
    if kind not in NETWORK_KINDS:
        raise ValueError(f"network kind {kind!r}: use one of {', '.join(NETWORK_KINDS)}")
    if kind == "lora":
        return {"network_module": "networks.lora", "network_args": {}}
    args: dict[str, Any] = {}
    if kind in LYCORIS_ALGOS:
        args["algo"] = LYCORIS_ALGOS[kind]
    if kind == "locon" or conv_dim_fraction is not None:
        conv_dim, conv_alpha = conv_values(dim, alpha, 1.0 if conv_dim_fraction is None else conv_dim_fraction)
        args.update(conv_dim=conv_dim, conv_alpha=conv_alpha)
    if kind == "lokr" and lokr_factor is not None:
        args["factor"] = int(lokr_factor)
    module = "lycoris.kohya" if kind in LYCORIS_ALGOS else "networks.lora"
    return {"network_module": module, "network_args": args}


def network_kind(network_module: str, network_args: dict) -> str:
    """Which kind a TrainConfig's network_module / network_args are (for reports and labels)."""
    if network_module == "lycoris.kohya":
        algo = str(network_args.get("algo", "locon")).lower()
        return {"locon": "lycoris_locon", "lora": "lycoris_locon"}.get(algo, algo)
    return "locon" if "conv_dim" in network_args else "lora"


def network_label(network_module: str, network_args: dict) -> str:
    """A short human name: "LoRA", "LoCon (kohya)", "LoHa", ..."""
    kind = network_kind(network_module, network_args)
    return LABELS.get(kind, f"{network_module} {kind}")
