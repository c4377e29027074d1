"""Several runs trained at once through one shared model: a cohort (lrfind.network.cohort).

Each run keeps everything of its own: config, data order, noise and timesteps (drawn from its own
seeded generators), optimizer, scheduler, validation plan, callbacks and LoopState; its steps are
`run_steps`, the one loop's bookkeeping. What the cohort shares is the work on the frozen model:
at each micro-step the runs' micro-batches of one latent shape go through the U-Net as one batch,
each run's rows through its own LoRA, and the runs' losses are backpropagated as one sum (each
run's weights get exactly its own gradient). Runs of different lengths leave when done; a run
whose callback stops it (a pruned trial) or whose loss diverges leaves with that exception as its
outcome, and the others go on. An error of the shared forward or backward (out of memory) stops
all of them. Whatever runs a run's own code (its validation, callbacks, drift forwards) runs with
the model routed to that run alone.

Numbers: a run trains in a cohort to what it trains alone up to float reassociation in the
batched kernels (a test compares); a cohort of one is the same ops as run_loop.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

from lrfind.network.cohort import LoraCohort, attach_lora_cohort, cohort_compatible
from lrfind.training.loop import LoopParts, LoopState, _emit, micro_inputs, micro_loss, predict, run_steps
from lrfind.training.plan import ValidationPlan
from lrfind.training.setup import lora_run, network_spec


@dataclass
class CohortRun:
    """One run of a cohort: its parts and callbacks, its state, and how it ended."""

    parts: LoopParts
    callbacks: Sequence[Any]
    state: LoopState
    outcome: Optional[Exception] = None  # None: it trained to its end; else what stopped it


@dataclass(frozen=True)
class CohortMemberSetup:
    """What `lora_cohort` needs of one run: lora_run's arguments for it."""

    config: Any  # TrainConfig
    dataset: Any  # Dataset
    validation_plan: Optional[ValidationPlan] = None


def can_join_cohort(config) -> bool:
    """A run that can train in a cohort: kohya LoRA without dropouts, no fp16 loss scaling, no torch.compile."""
    return (cohort_compatible(network_spec(config)) and config.mixed_precision != "fp16"
            and not config.torch_compile)


@contextmanager
def lora_cohort(setups: Sequence[CohortMemberSetup], components, store, validation_memo: Optional[dict] = None,
                held_out=None) -> Iterator[tuple[LoraCohort, list[LoopParts]]]:
    """lora_run for several runs on one model: their networks attached as one cohort, detached at the end.

    Every run must `can_join_cohort`, and the runs must share what the shared forward uses: model
    options, resolution and buckets, mixed precision and gradient checkpointing (the caller
    groups runs so). Each member's network starts with the weights it would get alone (its seed).
    """
    cohort = attach_lora_cohort(components, [network_spec(s.config) for s in setups],
                                [s.config.seed for s in setups])
    try:
        with ExitStack() as stack:
            with cohort.base():  # each run's caches from the base model, as lora_run makes them before attaching
                parts = [stack.enter_context(lora_run(s.config, components, s.dataset, store, validation_memo,
                                                      held_out=held_out, validation_plan=s.validation_plan,
                                                      network=member))
                         for s, member in zip(setups, cohort.members)]
            yield cohort, parts
    finally:
        cohort.detach()


def run_cohort(cohort: LoraCohort, runs: Sequence[CohortRun]) -> None:
    """Train every run to its end (or its outcome) in lock-step; run k's network is cohort.members[k]."""
    unet = runs[0].parts.unet
    for k, run in enumerate(runs):
        with cohort.solo(k):
            _emit(run.callbacks, "on_train_start", run.state)
    steps = {k: run_steps(run.parts, run.callbacks, run.state) for k, run in enumerate(runs)}
    unet.train()
    try:
        requests = {k: request for k in steps if (request := _advance(cohort, runs, steps, k, None)) is not None}
        while requests:
            losses = _cohort_losses(cohort, runs, requests)
            backward = {k: request for k, loss in losses.items()
                        if (request := _advance(cohort, runs, steps, k, loss)) is not None}
            terms = [request.loss for request in backward.values() if request.loss is not None]
            if terms:
                runs[0].parts.accelerator.backward(sum(terms[1:], terms[0]))
            requests = {k: request for k in backward
                        if (request := _advance(cohort, runs, steps, k, None)) is not None}
    finally:
        unet.eval()
        for run in runs:
            run.parts.optimizer.zero_grad(set_to_none=True)
        for generator in steps.values():
            generator.close()
    for k, run in enumerate(runs):
        if run.outcome is None:
            with cohort.solo(k):
                _emit(run.callbacks, "on_train_end", run.state)


def _advance(cohort: LoraCohort, runs, steps: dict, k: int, reply):
    """Run k's next request (its own code routed to it alone); None once it is done or stopped."""
    with cohort.solo(k):
        try:
            return steps[k].send(reply)  # send(None) starts a generator, as next() does
        except StopIteration:
            return None
        except Exception as stopped:  # noqa: BLE001 - the run's own outcome (pruned, diverged); the rest go on
            runs[k].outcome = stopped
            return None


def _cohort_losses(cohort: LoraCohort, runs, requests: dict) -> dict:
    """Each requesting run's micro-batch loss; the micro-batches of one latent shape share a forward."""
    inputs = {}
    for k, request in requests.items():
        with cohort.solo(k):  # a text-encoder LoRA conditions its own captions
            inputs[k] = micro_inputs(runs[k].parts, request.batch, request.gen, request.rng)
    shapes: dict = {}
    for k, micro in inputs.items():
        shapes.setdefault((tuple(micro.noisy.shape[1:]), tuple(micro.conditioning.hidden_states.shape[1:]),
                           micro.conditioning.added), []).append(k)
    losses = {}
    for members in shapes.values():
        segments, start = [], 0
        for k in members:
            rows = inputs[k].noisy.shape[0]
            segments.append((k, start, start + rows))
            start += rows
        noisy, timesteps, conditioning = _concatenated([inputs[k] for k in members])
        with cohort.split(segments):
            pred = predict(runs[members[0]].parts, noisy, timesteps, conditioning)
        for k, first, stop in segments:
            losses[k] = micro_loss(runs[k].parts, inputs[k], pred[first:stop] if len(segments) > 1 else pred)
    return losses


def _concatenated(micros: list):
    """One batch of several micro-batches: noisy latents, timesteps and conditioning row after row."""
    import torch

    from lrfind.models.conditioning import UNetConditioning

    if len(micros) == 1:
        return micros[0].noisy, micros[0].timesteps, micros[0].conditioning
    joined = [m.conditioning for m in micros]
    cat = (lambda field: None if getattr(joined[0], field) is None
           else torch.cat([getattr(c, field) for c in joined]))
    return (torch.cat([m.noisy for m in micros]), torch.cat([m.timesteps for m in micros]),
            UNetConditioning(cat("hidden_states"), cat("text_embeds"), cat("time_ids")))
