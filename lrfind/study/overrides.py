"""`lrfind study`'s training options applied to the search space. Pure.

Run-wide options (lrfind.training.run_options.RUN_WIDE) replace the space's `[fixed]` values. An
option the space could search (SEARCHABLE: --network-dim, --network-alpha, --max-train-epochs,
--optimizer-type, --lr-scheduler) fixes that dimension when the space fixes it too (one value);
when the space searches it, the study refuses, naming the space key to change: silently dropping
a searched dimension would make a different study under the same name.
"""

from __future__ import annotations

from typing import Any

from lrfind.errors import ConfigError
from lrfind.study.space import SearchSpace, validate_space
from lrfind.training.run_options import RUN_WIDE, SEARCHABLE


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _searched_values(dimension) -> list | None:
    """The values a dimension searches, or None when it is fixed (one choice or range [a, a])."""
    choices = getattr(dimension, "choices", None)
    if choices is not None:
        return list(choices) if len(choices) > 1 else None
    low, high = dimension.range
    return [low, high] if low != high else None


def _fixed_value(dimension):
    choices = getattr(dimension, "choices", None)
    return choices[0] if choices is not None else dimension.range[0]


def _refuse_searched(option: str, value: Any, key: str, searched: list, space_name: str) -> None:
    shown = f"{searched[0]}..{searched[1]}" if len(searched) == 2 and key != "optimizer" else str(searched)
    raise ConfigError(
        f"{_flag(option)} {value}: the search space {space_name} searches {key} ({shown}); leave "
        f"{_flag(option)} out to let the study pick it, or fix it in a copy of the space TOML "
        f"(`{key} = {value!r}`) and pass --space FILE.toml".replace("'", '"'))


def with_train_options(space: SearchSpace, options: dict, space_name: str) -> SearchSpace:
    """The space with the study's training options applied (options: only those the user set)."""
    if not options:
        return space
    data = space.model_dump(exclude_none=True)
    data["fixed"].update({k: v for k, v in options.items() if k in RUN_WIDE})
    for option, key in SEARCHABLE.items():
        if option not in options or option == "network_alpha":
            continue
        searched = _searched_values(getattr(space, key))
        if searched is not None:
            _refuse_searched(option, options[option], key, searched, space_name)
        data[key] = {"choices": [options[option]]}
    if "network_alpha" in options:
        data["network_alpha_fraction"] = _alpha_fraction(space, options, space_name)
    return validate_space(data, "lrfind study's training options")


def _alpha_fraction(space: SearchSpace, options: dict, space_name: str) -> dict:
    """--network-alpha A as the space's alpha fraction A / dim (the space keeps alpha <= dim)."""
    alpha = float(options["network_alpha"])
    searched = _searched_values(space.network_alpha_fraction)
    if searched is not None:
        _refuse_searched("network_alpha", alpha, "network_alpha_fraction", searched, space_name)
    dim = options.get("network_dim")
    if dim is None:
        if _searched_values(space.network_dim) is not None:
            raise ConfigError(f"--network-alpha {alpha:g}: the search space {space_name} searches network_dim, so a "
                              "fixed alpha has no single alpha/dim fraction; give --network-dim too, or set "
                              "network_alpha_fraction in a copy of the space TOML and pass --space FILE.toml")
        dim = _fixed_value(space.network_dim)
    fraction = alpha / float(dim)
    if fraction > 1:
        raise ConfigError(f"--network-alpha {alpha:g} is above --network-dim {dim}: a study keeps alpha <= dim; "
                          "lower --network-alpha")
    return {"choices": [fraction]}
