"""Benchmark: lrfind's training loop per step against the bare step of the same LoRA UNet.

    OMP_NUM_THREADS=1 python benchmarks/loop_overhead.py [--rounds 15] [--steps 20] [--profile]

Both sides train the same LoRA (lrfind's `attach_network` through `lora_run`) on the tiny model,
on CPU, on the same cached batch (one image of the shipped example dataset, its cached latent
and cached text embedding):

  bare  unet(noisy, t, **conditioning) -> MSE -> backward -> AdamW step -> zero_grad, on tensors
        prepared once (no noise drawing, no batching, no scheduler, no callbacks);
  loop  `run_loop(parts)`, the loop probe, trials and final runs use, with every item of the
        epoch being that same image: batching, noise, timesteps, add_noise, the text
        conditioner, accelerate's backward, lr scheduler, d*lr bookkeeping, a step callback.

After a warm-up of both, blocks of --steps steps alternate (bare, loop, loop, bare, ...) for
--rounds rounds in one process, so a change in machine load hits both sides alike. Per-step
times are medians over all measured steps, by wall time and by this process's CPU time (which
load from other processes on a shared machine hardly stretches); the ratio loop/bare is the
loop's overhead (target <= 1.10), also given as the median of per-round ratios (a round's two
blocks ran back to back, under the same load). Validation, which a trial runs once per epoch,
is timed separately and reported as its share per step. --profile runs cProfile over extra
loop blocks and prints the top entries.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common


def pick_item(items, resolution: int):
    """A square-bucket item when there is one (the typical SD crop), else the first."""
    square = [it for it in items if tuple(it.record.bucket) == (resolution, resolution)]
    return (square or list(items))[0]


def prepare_bare_batch(parts, item):
    """noisy latents, timesteps, the U-Net's conditioning kwargs, target for one fixed batch, made once."""
    import torch

    latents = parts.latents[(item.record.path, False)][None]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.tensor([500])
    noisy = parts.noise_scheduler.add_noise(latents, noise, timesteps)
    # the U-Net's keyword arguments made once (encoder_hidden_states; SDXL's added conditioning too)
    conditioning = parts.conditioner.encode([item.record.caption], as_written=True, device=parts.device)
    return noisy, timesteps, conditioning.unet_kwargs(parts.dtype), noise


def bare_block(unet, optimizer, batch, steps: int):
    """The minimum any LoRA training step must do; a StepTimer with each step's times."""
    import torch.nn.functional as F

    noisy, timesteps, unet_kwargs, target = batch
    unet.train()
    timer = _common.StepTimer()
    timer.start()
    for _ in range(steps):
        pred = unet(noisy, timesteps, **unet_kwargs).sample
        loss = F.mse_loss(pred.float(), target.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # any loop reads the loss back to log it
        timer.on_step_end()
    unet.eval()
    return timer


def loop_block(parts, item, steps: int, epoch: int):
    """`run_loop` over one epoch of `steps` copies of `item`; a StepTimer with each step's times.

    The first step's time includes run_loop's per-call setup (train mode, batching, generators).
    """
    from lrfind.training.loop import LoopState, run_loop

    parts.items = [item] * steps
    timer = _common.StepTimer()
    state = LoopState(total_steps=steps, steps_per_epoch=steps, epoch=epoch)
    timer.start()
    run_loop(parts, [timer], state)
    return timer


def profile_loop(parts, item, steps: int, top: int = 25) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    loop_block(parts, item, steps, epoch=999)
    profiler.disable()
    print(f"\ncProfile of {steps} loop steps, top {top} by cumulative time:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
    print("the loop's own code and what it calls besides the UNet, by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(r"lrfind|accelerate|lr_scheduler", 15)


def measure(parts, item, rounds: int, steps: int, warmup: int) -> dict:
    """Alternating blocks; per side all step times (wall, cpu) and per round the paired ratios."""
    import torch

    params = parts.network.unet_parameters()
    group = parts.optimizer.param_groups[0]  # the same AdamW kernel as the loop's (fused, lrfind's default)
    bare_optimizer = torch.optim.AdamW(params, lr=group["lr"], fused=bool(group.get("fused")))
    batch = prepare_bare_batch(parts, item)
    bare_block(parts.unet, bare_optimizer, batch, warmup)  # one-time allocations, optimizer state
    loop_block(parts, item, warmup, epoch=0)
    times = {(side, clock): [] for side in ("bare", "loop") for clock in ("wall", "cpu")}
    paired = {"wall": [], "cpu": []}
    for r in range(rounds):
        timers = {}
        for side in (("bare", "loop") if r % 2 == 0 else ("loop", "bare")):  # ABBA: drift hits both
            if side == "bare":
                timers[side] = bare_block(parts.unet, bare_optimizer, batch, steps)
            else:
                timers[side] = loop_block(parts, item, steps, epoch=r + 1)
        for clock in ("wall", "cpu"):
            for side, timer in timers.items():
                times[(side, clock)] += getattr(timer, clock)
            # Blocks next to each other in time share the machine's load: their ratio is robust.
            paired[clock].append(_common.median(getattr(timers["loop"], clock))
                                 / _common.median(getattr(timers["bare"], clock)))
    return {"times": times, "paired": paired}


def time_validation(parts, validation, repeats: int = 3) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        validation.loss(parts.unet, parts.conditioner, parts.device, parts.dtype)
        seconds.append(time.perf_counter() - start)
    return _common.median(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (each: a bare and a loop block)")
    parser.add_argument("--steps", type=int, default=20, help="steps per block")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up steps per side, not measured")
    parser.add_argument("--resolution", type=int, default=64, help="pixels (64 -> 8x8 latents on the tiny model)")
    parser.add_argument("--network-dim", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="also cProfile extra loop blocks")
    args = parser.parse_args(argv)

    import torch

    from lrfind.cache import TensorStore
    from lrfind.training.setup import lora_run

    print(_common.machine_line())
    with tempfile.TemporaryDirectory(prefix="lrfind-bench-loop-") as tmp:
        tmp = Path(tmp)
        config = _common.train_config(_common.example_dataset(tmp), tmp, resolution=args.resolution,
                                      network_dim=args.network_dim, network_alpha=float(args.network_dim))
        components = _common.build_model("tiny")
        with lora_run(config, components, _common.scan(config), TensorStore(tmp / "features")) as parts:
            validation, parts.validation = parts.validation, None  # timed on its own below
            epoch_steps = len(parts.items)
            item = pick_item(parts.items, args.resolution)
            latent_shape = tuple(parts.latents[(item.record.path, False)].shape)
            print(f"tiny model, LoRA dim {args.network_dim} ({parts.network.trainable_parameter_count():,} params), "
                  f"batch 1, latents {latent_shape}, {args.rounds} rounds x {args.steps} steps per side")
            result = measure(parts, item, args.rounds, args.steps, args.warmup)
            val_seconds = time_validation(parts, validation)
            report(result, val_seconds, epoch_steps)
            if args.profile:
                profile_loop(parts, item, args.steps * 3)
    print(f"peak RSS {_common.peak_rss_gib():.2f} GiB, torch threads {torch.get_num_threads()}")
    return 0


def report(result: dict, val_seconds: float, epoch_steps: int) -> None:
    times, paired = result["times"], result["paired"]
    for clock in ("wall", "cpu"):
        bare = 1000 * _common.median(times[("bare", clock)])
        loop = 1000 * _common.median(times[("loop", clock)])
        bare_mean = 1000 * sum(times[("bare", clock)]) / len(times[("bare", clock)])
        loop_mean = 1000 * sum(times[("loop", clock)]) / len(times[("loop", clock)])
        rounds = paired[clock]
        print(f"{clock:4s} time  bare {bare:7.2f} ms/step, loop {loop:7.2f} ms/step (medians; means {bare_mean:.2f} "
              f"and {loop_mean:.2f})")
        print(f"{clock:4s} ratio loop/bare x{loop / bare:.3f} (medians), x{loop_mean / bare_mean:.3f} (means), "
              f"x{_common.median(rounds):.3f} median of {len(rounds)} paired rounds (range {min(rounds):.3f}.."
              f"{max(rounds):.3f}); target <= 1.10")
    bare_wall, loop_wall = (_common.median(times[(side, "wall")]) for side in ("bare", "loop"))
    val_share = val_seconds / epoch_steps
    print(f"validation pass {1000 * val_seconds:.1f} ms (wall) once per epoch of {epoch_steps} steps: "
          f"+{1000 * val_share:.2f} ms/step -> x{(loop_wall + val_share) / bare_wall:.3f} with per-epoch validation")


if __name__ == "__main__":
    raise SystemExit(main())
