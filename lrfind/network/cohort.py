"""Several kohya LoRA networks on one model at once, each sample of a batch through its own (a cohort).

A study's trials differ in their LoRA, not in the frozen model they train through. Trained one by
one, each trial pays for every forward and backward through the whole U-Net at batch 1, where a
CPU (and a GPU at small latents) is far from its throughput. A cohort attaches K networks together:
each adapted layer becomes a `RoutedLoRA` holding the base layer and one LoRAModule per member
(None where a member does not adapt that layer: another module set, no text encoder). A batch is
the members' micro-batches concatenated; `LoraCohort.split` says which rows are whose, and each
member's LoRA branch sees only its own rows. The base layer runs once for the whole batch. Each
member's loss depends on its own weights only, so the gradient of the summed loss is each
member's own gradient (lrfind.training.cohort).

Members are ordinary LoraNetworks (state dicts, param groups, kohya names) whose modules are made
exactly as `attach_lora` makes them, from the same seed: a member starts where its trial alone
would. `LoraCohort.detach()` puts the model back; a member's own `detach()` does nothing.
kohya's dropouts draw from the global RNG, so members that use them would not draw what they draw
alone: `cohort_compatible` leaves them (and LyCORIS types, built by another library) out.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from lrfind.network.lora import (
    LoraNetwork,
    freeze_parts,
    kohya_lora_targets,
    lora_targets,
    new_lora_modules,
    replace_layer,
    restore_layers,
)
from lrfind.network.lora_args import parse_lora_args
from lrfind.network.naming import naming_for
from lrfind.network.spec import NetworkSpec
from lrfind.network.types.lora import NETWORK_MODULE

# (member index, first row, row after the last); a stop of None: to the end of the batch
Segment = tuple[int, int, Optional[int]]


def cohort_compatible(spec: NetworkSpec) -> bool:
    """Whether a network of `spec` can train in a cohort: kohya's networks.lora without dropouts."""
    if spec.network_module != NETWORK_MODULE:
        return False
    args = parse_lora_args(spec.network_args)
    return spec.network_dropout is None and args.rank_dropout is None and args.module_dropout is None


class _Routing:
    """Which rows of the current batch belong to which member; shared by every RoutedLoRA of a cohort."""

    def __init__(self):
        self.segments: Optional[tuple[Segment, ...]] = None


def _routed_lora_class():
    import torch
    from torch import nn

    class RoutedLoRA(nn.Module):
        """One adapted layer of a cohort: the base layer once, each member's LoRA branch on its rows."""

        def __init__(self, base_layer, members: Sequence, routing: _Routing):
            super().__init__()
            self.base_layer = base_layer
            self.members = nn.ModuleList([m if m is not None else nn.Identity() for m in members])
            self._adapts = [m is not None for m in members]
            self._routing = [routing]  # in a list: shared state, not a submodule

        def forward(self, x):
            segments = self._routing[0].segments
            if segments is None:
                raise RuntimeError("a cohort's model was called outside LoraCohort.split / solo")
            out = self.base_layer(x)
            if not segments:  # LoraCohort.base(): the model as it was
                return out
            if len(segments) == 1:  # one member's batch: no slicing, the same ops as the member alone
                return self._add(segments[0][0], out, x)
            return torch.cat([self._add(k, out[start:stop], x[start:stop]) for k, start, stop in segments])

        def _add(self, member: int, out, x):
            return self.members[member].add_to(out, x) if self._adapts[member] else out

    return RoutedLoRA


class CohortMember(LoraNetwork):
    """One member's network: its own modules, kohya names and parameters, in a cohort's model."""

    def detach(self) -> None:
        """Nothing: the members share the model's layers, and LoraCohort.detach() restores them."""


class LoraCohort:
    """K kohya LoRA networks attached together; make with `attach_lora_cohort`."""

    def __init__(self, components, members: list[CohortMember], routed: dict, saved_state: dict, routing: _Routing):
        self.components = components
        self.members = members
        self._routed = routed  # part -> [(module path, RoutedLoRA)]
        self._saved_state = saved_state  # part -> (training flag, {param name: requires_grad})
        self._routing = routing

    @contextmanager
    def split(self, segments: Sequence[Segment]) -> Iterator[None]:
        """Route the rows of the batch being run: `segments` cover it in order, one per member in it."""
        before, self._routing.segments = self._routing.segments, tuple(segments)
        try:
            yield
        finally:
            self._routing.segments = before

    def solo(self, member: int):
        """Every row of every call to member `member` (its validation, drift, samples of its weights)."""
        return self.split([(member, 0, None)])

    def base(self):
        """The base model, no member's LoRA (what a run's caches are made from before it attaches)."""
        return self.split(())

    def detach(self) -> None:
        """Put the original layers back; restore requires_grad and train/eval. Idempotent."""
        restore_layers(self.components, self._routed, self._saved_state)
        for member in self.members:
            member._modules.clear()


def attach_lora_cohort(components, specs: Sequence[NetworkSpec], seeds: Sequence[Optional[int]]) -> LoraCohort:
    """Attach one kohya LoRA network per spec (each `cohort_compatible`), member k seeded by seeds[k]."""
    from lrfind.network.lora_module import LoRAModule  # lazy: it imports torch

    if not specs or len(specs) != len(seeds) or not all(cohort_compatible(s) for s in specs):
        raise ValueError("a cohort needs one seed per spec, each a networks.lora spec without dropouts")
    args = [parse_lora_args(spec.network_args) for spec in specs]
    member_targets = [lora_targets(components, spec, arg) for spec, arg in zip(specs, args)]
    modules = [new_lora_modules(components, spec, arg, targets, seed)
               for spec, arg, targets, seed in zip(specs, args, member_targets, seeds)]
    parts = list(dict.fromkeys(part for targets in member_targets for part in targets))
    saved_state = freeze_parts(components, parts, LoRAModule)
    routing, routed_class, routed = _Routing(), _routed_lora_class(), {}
    for part in parts:
        by_path = [dict(member.get(part, ())) for member in modules]
        # every layer some member adapts, in the model's module order
        paths = [path for path, _, _ in kohya_lora_targets(getattr(components, part), part, conv=True)
                 if any(path in found for found in by_path)]
        routed[part] = []
        for path in paths:
            layer = getattr(components, part).get_submodule(path)
            module = routed_class(layer, [found.get(path) for found in by_path], routing)
            replace_layer(getattr(components, part), path, module)
            routed[part].append((path, module))
    members = [CohortMember(components, spec, arg, found, {}, naming_for(components))
               for spec, arg, found in zip(specs, args, modules)]
    return LoraCohort(components, members, routed, saved_state, routing)
