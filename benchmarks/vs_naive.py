"""Benchmark: steps/s of a lrfind trial against a naive diffusers + peft loop, same data, one run.

    OMP_NUM_THREADS=1 python benchmarks/vs_naive.py [--models tiny,sd15] [--sd-steps 5] ...

  lrfind  `lora_run` + `run_loop`: latents and text embeddings come from the cache (encoded once,
          when the trial is set up; that setup time is printed separately);
  naive   what diffusers' examples/text_to_image/train_text_to_image_lora.py does every step:
          open, resize and crop the images, tokenize the captions, VAE-encode the pixels
          (`latent_dist.sample()`), run the text encoder, then noise, UNet, MSE, backward,
          clip_grad_norm_, AdamW step, lr scheduler step. The LoRA goes on with the example's
          `unet.add_adapter(LoraConfig(...))` and off again with `unet.unload_lora()`.

Both train the same LoRA (rank, alpha, kohya's networks.lora module set in the UNet, AdamW, same lr)
on the same images at the same bucket sizes in the same batch order (lrfind's kohya-style
batches), at the same batch size, on CPU in fp32. The naive side loads each image at its lrfind
bucket size so both UNets see the same latent shapes: the difference is only the data path.
Per side, the first --warmup steps are not timed. --*-rounds > 1 alternates the sides (naive
first in even rounds, lrfind first in odd ones) so load from other processes hits both alike.

Models: `tiny` (the built-in tiny SD) and `sd15` (SD 1.5-size UNet/VAE/CLIP text encoder from the
configs in lrfind/models/configs/sd15, random init, no download). One model is in memory at a
time. The validation pass a trial runs at each epoch end is left out of both sides (an epoch of
the example dataset is 70 steps; the SD-size run never reaches it).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import _common


def batch_order(dataset, config):
    """The batches run_loop would draw, epoch after epoch (lrfind's kohya-style bucketing)."""
    from lrfind.training.batches import epoch_batches, epoch_items

    items = epoch_items(dataset.train_images, dataset.reg_images, config.prior_loss_weight)
    epoch = 0
    while True:
        yield from epoch_batches(items, config.dataset.batch_size, config.seed, epoch)
        epoch += 1


def naive_side(components, dataset, config, warmup: int, steps: int):
    """diffusers' train_text_to_image_lora.py inner loop; a StepTimer of the steps after warm-up."""
    import torch
    import torch.nn.functional as F
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig

    from lrfind.data.images import load_bucket_image
    from lrfind.network.lora import kohya_lora_targets

    unet, vae, text_encoder, tokenizer = components.unet, components.vae, components.text_encoder, components.tokenizer
    noise_scheduler = components.noise_scheduler
    # The same modules as lrfind's (kohya's networks.lora set), by their full paths.
    targets = [path for path, _, _ in kohya_lora_targets(unet, "unet")]
    unet.add_adapter(LoraConfig(r=config.network.dim, lora_alpha=config.network.alpha, init_lora_weights=True,
                                target_modules=targets))
    try:
        lora_params = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(lora_params, lr=config.optimizer.learning_rate)
        lr_scheduler = get_scheduler("constant", optimizer=optimizer)
        unet.train()
        timer = _common.StepTimer()
        batches = batch_order(dataset, config)
        for _ in range(warmup + steps):
            batch = next(batches)
            timer.start()
            # The example's per-sample transforms (datasets.with_transform) and tokenize_captions.
            pixel_values = torch.stack([load_bucket_image(item.record) for item in batch])
            input_ids = tokenizer([item.record.caption for item in batch], max_length=tokenizer.model_max_length,
                                  padding="max_length", truncation=True, return_tensors="pt").input_ids
            latents = vae.encode(pixel_values).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],)).long()
            noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
            encoder_hidden_states = text_encoder(input_ids, return_dict=False)[0]
            model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False)[0]
            loss = F.mse_loss(model_pred.float(), noise.float(), reduction="mean")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lora_params, 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            loss.item()  # the example logs it
            timer.on_step_end()
    finally:
        unet.eval()
        unet.unload_lora()  # back to the plain UNet for the other side
    return timer.drop(warmup)


def lrfind_side(components, dataset, config, store, warmup: int, steps: int):
    """(setup seconds incl. cache fill, StepTimer of the steps after warm-up) of a lrfind trial."""
    from lrfind.training.loop import LoopState, run_loop
    from lrfind.training.setup import lora_run

    start = time.perf_counter()
    with lora_run(config, components, dataset, store) as parts:
        setup_seconds = time.perf_counter() - start
        parts.validation = None  # per-epoch evaluation is not a training step (see the docstring)
        timer = _common.StepTimer()
        timer.start()
        run_loop(parts, [timer], LoopState(total_steps=warmup + steps, steps_per_epoch=parts.steps_per_epoch))
    return setup_seconds, timer.drop(warmup)


def compare(model: str, resolution: int, rounds: int, steps: int, warmup: int, args) -> dict:
    import torch

    from lrfind.cache import TensorStore

    with tempfile.TemporaryDirectory(prefix="lrfind-bench-naive-") as tmp:
        tmp = Path(tmp)
        config = _common.train_config(_common.example_dataset(tmp), tmp, resolution=resolution,
                                      train_batch_size=args.batch_size, network_dim=args.network_dim,
                                      network_alpha=float(args.network_dim), max_train_steps=warmup + steps)
        dataset = _common.scan(config)
        built = time.perf_counter()
        components = _common.build_model(model)
        built = time.perf_counter() - built
        store = TensorStore(tmp / "features")
        buckets = sorted({tuple(r.bucket) for r in dataset.train_images})
        print(f"\n== {model}: built in {built:.1f} s; {len(dataset.train_images)} images at {resolution} px, buckets "
              f"{buckets}; batch {args.batch_size}, LoRA dim {args.network_dim}; {rounds} round(s) x {steps} "
              f"timed steps per side after {warmup} warm-up", flush=True)
        times = {(side, clock): [] for side in ("naive", "lrfind") for clock in ("wall", "cpu")}
        setups = []
        for r in range(rounds):
            for side in (("naive", "lrfind") if r % 2 == 0 else ("lrfind", "naive")):
                if side == "naive":
                    timer = naive_side(components, dataset, config, warmup, steps)
                else:
                    setup_seconds, timer = lrfind_side(components, dataset, config, store, warmup, steps)
                    setups.append(setup_seconds)
                times[(side, "wall")] += timer.wall
                times[(side, "cpu")] += timer.cpu
                print(f"   round {r}: {side} done, peak RSS {_common.peak_rss_gib():.2f} GiB", flush=True)
        del components
        gc.collect()
    return {"model": model, "times": times, "setups": setups}


def report(result: dict) -> dict:
    """Print steps/s of both sides by wall and CPU time; return lrfind/naive steps/s per clock."""
    model, times, ratios = result["model"], result["times"], {}
    for clock in ("wall", "cpu"):
        naive, cached = times[("naive", clock)], times[("lrfind", clock)]
        naive_sps, cached_sps = len(naive) / sum(naive), len(cached) / sum(cached)
        ratios[clock] = cached_sps / naive_sps
        print(f"{model} {clock:4s}: naive {naive_sps:7.3f} steps/s ({1000 * sum(naive) / len(naive):8.1f} ms/step, "
              f"median {1000 * _common.median(naive):8.1f}); lrfind {cached_sps:7.3f} steps/s "
              f"({1000 * sum(cached) / len(cached):8.1f} ms/step, median {1000 * _common.median(cached):8.1f})")
        print(f"{model} {clock:4s}: ratio lrfind/naive steps/s x{ratios[clock]:.2f} (medians "
              f"x{_common.median(naive) / _common.median(cached):.2f}): lrfind takes "
              f"{100 * abs(1 - 1 / ratios[clock]):.0f}% {'less' if ratios[clock] >= 1 else 'more'} time per step")
    setups = ", ".join(f"{s:.1f}" for s in result["setups"])
    print(f"{model}: lrfind trial setup (LoRA, optimizer, caches) {setups} s wall (the first fills an empty cache)")
    return ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,sd15", help="comma-separated: tiny, sd15")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--network-dim", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side and round")
    parser.add_argument("--tiny-resolution", type=int, default=64)
    parser.add_argument("--tiny-rounds", type=int, default=6)
    parser.add_argument("--tiny-steps", type=int, default=20)
    parser.add_argument("--sd-resolution", type=int, default=256)
    parser.add_argument("--sd-rounds", type=int, default=1)
    parser.add_argument("--sd-steps", type=int, default=5)
    args = parser.parse_args(argv)

    print(_common.machine_line())
    ratios = {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        if model == "tiny":
            result = compare("tiny", args.tiny_resolution, args.tiny_rounds, args.tiny_steps, args.warmup, args)
        else:
            result = compare(model, args.sd_resolution, args.sd_rounds, args.sd_steps, args.warmup, args)
        ratios[model] = report(result)
    print("\nsummary, lrfind steps/s over the naive loop's: " + "; ".join(
        f"{m} x{r['wall']:.2f} (wall), x{r['cpu']:.2f} (CPU)" for m, r in ratios.items()))
    print(f"peak RSS {_common.peak_rss_gib():.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
