"""Benchmark: lrfind's training loop per step against the bare step of the same LoRA UNet.

    OMP_NUM_THREADS=1 python benchmarks/loop_overhead.py [--rounds 15] [--steps 20] [--profile]

Both sides train the same peft LoRA (lrfind's `attach_lora` through `lora_run`) on the tiny model,
on CPU, on the same cached batch (one image of the shipped example dataset, its cached latent
and cached text embedding):

  bare  unet(noisy, t, embeddings) -> MSE -> backward -> AdamW step -> zero_grad, on tensors
        prepared once (no noise drawing, no batching, no scheduler, no callbacks);
  loop  `run_loop(parts)`, the loop probe, trials and final runs use, with every item of the
        epoch being that same image: batching, noise, timesteps, add_noise, the text
        conditioner, accelerate's backward, lr scheduler, d*lr bookkeeping, a step callback.

After a warm-up of both, blocks of --steps steps alternate (bare, loop, loop, bare, ...) for
--rounds rounds in one process, so a change in machine load hits both sides alike. Per-step
times are medians over all measured steps; the ratio loop/bare is the loop's overhead (target
<= 1.10), also given as the median of per-round ratios (each round's two blocks ran back to back,
under the same load from other processes). Validation, which a trial runs once per epoch, is timed separately and reported as
its share per step. --profile runs cProfile over extra loop blocks and prints the top entries.
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
    """noisy latents, timesteps, embeddings, target for one fixed batch, made once."""
    import torch

    latents = parts.latents[(item.record.path, False)][None]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.tensor([500])
    noisy = parts.noise_scheduler.add_noise(latents, noise, timesteps)
    embeddings = parts.conditioner.encode([item.record.caption], as_written=True, device=parts.device)
    return noisy, timesteps, embeddings, noise


def bare_block(unet, optimizer, batch, steps: int) -> list[float]:
    """The minimum any LoRA training step must do; per-step wall times."""
    import torch.nn.functional as F

    noisy, timesteps, embeddings, target = batch
    unet.train()
    durations = []
    for _ in range(steps):
        start = time.perf_counter()
        pred = unet(noisy, timesteps, embeddings).sample
        loss = F.mse_loss(pred.float(), target.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # any loop reads the loss back to log it
        durations.append(time.perf_counter() - start)
    unet.eval()
    return durations


def loop_block(parts, item, steps: int, epoch: int) -> list[float]:
    """`run_loop` over one epoch of `steps` copies of `item`; per-step wall times."""
    from lrfind.training.loop import LoopState, run_loop

    parts.items = [item] * steps
    timer = _common.StepTimer()
    state = LoopState(total_steps=steps, steps_per_epoch=steps, epoch=epoch)
    timer.start()
    run_loop(parts, [timer], state)
    return timer.durations


def profile_loop(parts, item, steps: int, top: int = 25) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    loop_block(parts, item, steps, epoch=999)
    profiler.disable()
    print(f"\ncProfile of {steps} loop steps, top {top} by cumulative time:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def measure(parts, item, rounds: int, steps: int, warmup: int) -> dict:
    import torch

    params = parts.network.unet_parameters()
    bare_optimizer = torch.optim.AdamW(params, lr=parts.optimizer.param_groups[0]["lr"])
    batch = prepare_bare_batch(parts, item)
    bare_block(parts.unet, bare_optimizer, batch, warmup)  # one-time allocations, optimizer state
    loop_block(parts, item, warmup, epoch=0)
    bare, loop, bare_blocks, loop_blocks, paired = [], [], [], [], []
    for r in range(rounds):
        medians = {}
        order = ("bare", "loop") if r % 2 == 0 else ("loop", "bare")  # ABBA: drift hits both sides
        for side in order:
            if side == "bare":
                times = bare_block(parts.unet, bare_optimizer, batch, steps)
                bare += times
                bare_blocks.append(sum(times) / steps)
                medians[side] = _common.median(times)
            else:
                times = loop_block(parts, item, steps, epoch=r + 1)
                loop += times
                loop_blocks.append(sum(times) / steps)
                medians[side] = _common.median(times)
        paired.append(medians["loop"] / medians["bare"])  # neighbours in time share the machine's load
    return {"bare": bare, "loop": loop, "bare_blocks": bare_blocks, "loop_blocks": loop_blocks, "paired": paired}


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
            if args.profile:
                profile_loop(parts, item, args.steps * 3)
        report(result, val_seconds, epoch_steps)
    print(f"peak RSS {_common.peak_rss_gib():.2f} GiB, torch threads {torch.get_num_threads()}")
    return 0


def report(result: dict, val_seconds: float, epoch_steps: int) -> None:
    bare_ms, loop_ms = 1000 * _common.median(result["bare"]), 1000 * _common.median(result["loop"])
    bare_block_ms = 1000 * _common.median(result["bare_blocks"])
    loop_block_ms = 1000 * _common.median(result["loop_blocks"])
    print(f"bare step  median {bare_ms:7.2f} ms/step   (median of block means {bare_block_ms:7.2f})")
    print(f"loop step  median {loop_ms:7.2f} ms/step   (median of block means {loop_block_ms:7.2f}, "
          "includes run_loop's per-call setup)")
    paired = result["paired"]
    print(f"ratio loop/bare: x{loop_ms / bare_ms:.3f} per-step median, x{loop_block_ms / bare_block_ms:.3f} "
          f"block means, x{_common.median(paired):.3f} median of {len(paired)} paired rounds "
          f"(range {min(paired):.3f}..{max(paired):.3f}); target <= 1.10")
    val_share = 1000 * val_seconds / epoch_steps
    print(f"validation pass {1000 * val_seconds:.1f} ms once per epoch of {epoch_steps} steps: +{val_share:.2f} ms/step "
          f"-> x{(loop_ms + val_share) / bare_ms:.3f} with per-epoch validation")


if __name__ == "__main__":
    raise SystemExit(main())
