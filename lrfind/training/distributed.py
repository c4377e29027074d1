"""Data-parallel training over several processes (`accelerate launch`, torchrun, `lrfind train
--num-processes N`): each process trains one shard of every global batch and the LoRA gradients are
averaged across processes before each optimizer step, so N processes at batch B train exactly as
one process at batch N x B (within float rounding).

The processes find each other through the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT); the process group is gloo on the CPU, nccl on GPUs. Every process draws
the whole global batch's noise, timesteps, flips and caption shuffles from the same seeded
generators and keeps its shard, so the random stream does not depend on the process count. A
shard's loss is its sum over the global batch size x N, so the average over processes is the
global batch's mean even when the last batch of a bucket does not divide evenly.

Only the main process (rank 0) validates, samples and writes files (lrfind.final.run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def shard(self, count: int) -> slice:
        """This process's positions in a global batch of `count` items (contiguous, sizes differ by <= 1)."""
        per, extra = divmod(count, self.world_size)
        start = self.rank * per + min(self.rank, extra)
        return slice(start, start + per + (1 if self.rank < extra else 0))


SINGLE = ProcessGroup()


def process_group() -> ProcessGroup:
    """This process's place, from the launcher's environment; the group is joined once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)  # "cuda" is then this process's own GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank)


def average_gradients(parameters) -> None:
    """All-reduce the mean of every parameter's gradient (a missing one counts as zeros), in one call."""
    import torch
    import torch.distributed as dist

    params = list(parameters)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
        offset += n


def mean_across(value: float) -> float:
    """The mean of a number over all processes (every process gets it, so all stop on a NaN together)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def launch_command(num_processes: int, lrfind_args: list[str]) -> list[str]:
    """torchrun (torch.distributed.run) starting `python -m lrfind ARGS` num_processes times on this
    machine: what `lrfind train --num-processes N` runs (the children see WORLD_SIZE and train)."""
    import socket
    import sys

    with socket.socket() as probe:  # a free port for the group's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(num_processes),
            "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "lrfind", *lrfind_args]


def launched() -> bool:
    """This process is one of a launcher's (torchrun, accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1
