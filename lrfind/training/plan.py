"""When the loop validates: loop-only plan data, passed to `lora_run` beside the TrainConfig.

A study computes it per trial (every `eval_every_steps`, a swept trial's epoch boundaries, cut to
the passes the pruner reads: lrfind.study.pruning); `lrfind train` makes it from kohya's
--validate-every-n-steps. It is not a user option: a TrainConfig (and so `lrfind train --help`,
a TOML config, an export) never carries a list of steps. Pure: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ValidationPlan:
    every_n_steps: Optional[int] = None  # neither this nor at_steps: after each epoch
    at_steps: frozenset[int] = frozenset()  # also at these steps (a swept trial's epoch boundaries)

    @classmethod
    def at(cls, steps) -> "ValidationPlan":
        return cls(None, frozenset(steps))

    @property
    def per_epoch(self) -> bool:
        return not (self.every_n_steps or self.at_steps)

    def validates_at(self, step: int) -> bool:
        every = self.every_n_steps
        return bool(every and step % every == 0) or step in self.at_steps

    def steps_up_to(self, total: int) -> set[int]:
        """The steps up to `total` this plan validates at (none for a per-epoch plan)."""
        if self.every_n_steps:
            return set(range(self.every_n_steps, total + 1, self.every_n_steps))
        return {s for s in self.at_steps if s <= total}
