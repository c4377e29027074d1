"""Benchmark (issue #15): does a LoRA on `tiny-pretrained` overfit, and from which epoch?

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/overfitting_curve.py [--model tiny-pretrained]
        [--epochs 40] [--lr 5e-3] [--dim 8] [--resolution 64] [--json FILE]

A concept held out of pretraining (the example dataset's cat, `10_lrfcat cat`, 6 photos) is
trained for many epochs at a high constant lr (AdamW, UNet LoRA, batch 1, no repeats). At every
epoch end, with the LoRA live in the model:
  train     the deterministic noise-prediction loss on the training photos (fixed timesteps
            200/400/600/800, fixed noise: lrfind's validation loss);
  held-out  the same loss on other crops of the same cat, never trained on (different regions
            and scales of the photo), with the training captions' tags;
  drift     how far the LoRA moves the base model where it should not: the mean squared change of
            the noise prediction on prompts and images of the pretraining set (astronaut, rocket,
            moon, ...), without the trigger word, at fixed timesteps and noise, relative to the base
            model's prediction there (0 = the base model exactly).
Printed: one row per epoch, the epoch of the lowest train and held-out loss, and the first epoch
at which held-out loss is 2 % above its minimum while train loss is still falling (where
overfitting begins). On the random `tiny` (`--model tiny`) the same run shows what a model
without a prior does: held-out tracks train.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HELD_OUT_BOXES = [(0, 100, 200, 300), (251, 100, 451, 300), (120, 40, 320, 240), (200, 0, 440, 240),
                  (0, 0, 240, 240), (150, 60, 390, 300)]  # chelsea (451 x 300) crops unlike the training ones
HELD_OUT_CAPTION = "lrfcat, cat, tabby cat, face, green eyes, whiskers"
DRIFT_SOURCES = {"astronaut": "astronaut, woman, portrait, smiling", "rocket": "rocket, launch pad, blue sky",
                 "moon": "moon, lunar surface, craters, monochrome", "coins": "coins, money, metal, monochrome",
                 "colorwheel": "color wheel, rainbow, colorful, circle", "retina": "retina, fundus, eye, red"}
TIMESTEPS = (200, 400, 600, 800)


def _pixels(images: list, px: int):
    import torch
    from PIL import Image

    arrays = [np.asarray(Image.fromarray(a).convert("RGB").resize((px, px), Image.Resampling.LANCZOS),
                         dtype=np.float32) / 127.5 - 1 for a in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


class FixedNoiseLoss:
    """Noise-prediction error on fixed (image, timestep, noise) triples; or, with `reference`,
    the change of the prediction against the reference predictions (drift)."""

    def __init__(self, components, pixels, captions: list[str], seed: int = 0):
        import torch

        from lrfind.models.text_encoding import encode_prompts

        with torch.no_grad():
            latents = components.vae.encode(pixels).latent_dist.mean * components.vae.config.scaling_factor
            emb = encode_prompts(components, captions, grad=False)
        gen = torch.Generator().manual_seed(seed)
        rows = [(latents[i], emb[i], t) for i in range(len(latents)) for t in TIMESTEPS]
        self.t = torch.tensor([t for _, _, t in rows])
        self.noise = torch.randn((len(rows), *latents.shape[1:]), generator=gen)
        self.emb = torch.stack([e for _, e, _ in rows])
        lat = torch.stack([lat for lat, _, _ in rows])
        self.noisy = components.noise_scheduler.add_noise(lat, self.noise, self.t)

    def predict(self, unet):
        import torch

        was = unet.training
        unet.eval()
        with torch.no_grad():
            out = torch.cat([unet(self.noisy[i:i + 16], self.t[i:i + 16], self.emb[i:i + 16]).sample
                             for i in range(0, len(self.t), 16)])
        unet.train(was)
        return out

    def loss(self, unet) -> float:
        return float((self.predict(unet) - self.noise).double().pow(2).mean())


class EpochProbe:
    """Loop callback: train / held-out loss and drift at each epoch end, LoRA live."""

    def __init__(self, unet, train, held_out, drift):
        self.unet, self.train, self.held_out, self.drift = unet, train, held_out, drift
        self.base_drift_pred = drift.predict(unet)
        self.rows = [self._row(0)]

    def _row(self, epoch: int) -> dict:
        pred = self.drift.predict(self.unet)
        drift = float((pred - self.base_drift_pred).double().pow(2).mean()
                      / self.base_drift_pred.double().pow(2).mean())
        return {"epoch": epoch, "train": self.train.loss(self.unet), "held_out": self.held_out.loss(self.unet),
                "drift": drift}

    def on_epoch_end(self, state) -> None:
        self.rows.append(self._row(state.epoch))


def overfit_start(rows: list[dict], margin: float = 0.02) -> int | None:
    """First epoch after the held-out minimum where held-out is `margin` above it and train is lower
    than at that minimum: training still improves on its pictures while new ones get worse."""
    best = min(rows, key=lambda r: r["held_out"])
    for row in rows:
        if row["epoch"] > best["epoch"] and row["held_out"] > best["held_out"] * (1 + margin) \
                and row["train"] < best["train"]:
            return row["epoch"]
    return None


def run(args) -> list[dict]:
    import torch
    from skimage import data

    from lrfind.cache import TensorStore
    from lrfind.config import ModelConfig
    from lrfind.data.example import example_dataset_path
    from lrfind.models.loading import load_components
    from lrfind.training.config import TrainConfig
    from lrfind.training.kohya_names import train_config
    from lrfind.final.run import train_lora

    torch.manual_seed(0)
    components = load_components(ModelConfig(model=args.model))
    with tempfile.TemporaryDirectory(prefix="lrfind-overfit-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(example_dataset_path() / "10_lrfcat cat", tmp / "data" / "1_lrfcat cat")
        train_files = sorted((tmp / "data" / "1_lrfcat cat").glob("*.jpg"))
        from PIL import Image

        train_images = [np.asarray(Image.open(p).convert("RGB")) for p in train_files]
        train_caps = [p.with_suffix(".txt").read_text().strip() for p in train_files]
        cat = data.chelsea()
        held_out = [cat[top:bottom, left:right] for left, top, right, bottom in HELD_OUT_BOXES]
        drift_images = [np.asarray(getattr(data, name)()) for name in DRIFT_SOURCES]
        drift_images = [np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3] for a in drift_images]
        px = args.resolution
        probe = EpochProbe(components.unet,
                           FixedNoiseLoss(components, _pixels(train_images, px), train_caps),
                           FixedNoiseLoss(components, _pixels(held_out, px), [HELD_OUT_CAPTION] * len(held_out)),
                           FixedNoiseLoss(components, _pixels(drift_images, px), list(DRIFT_SOURCES.values())))
        config = train_config(dict(train_data_dir=tmp / "data", pretrained_model_name_or_path=args.model,
                             resolution=px, enable_bucket=False, max_train_epochs=args.epochs,
                             network_dim=args.dim, network_alpha=args.dim, learning_rate=args.lr,
                             network_train_unet_only=True, output_dir=tmp / "out", output_name="cat",
                             progress=False, save_state=False, xy_grid=False, seed=0))
        train_lora(config, components=components, store=TensorStore(tmp / "cache"), callbacks=[probe])
        return probe.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-pretrained", choices=("tiny-pretrained", "tiny"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = run(args)
    print(f"model {args.model}, lr {args.lr:g}, dim {args.dim}, {args.epochs} epochs x 6 steps, {args.resolution} px")
    print("epoch | train loss | held-out loss | drift")
    for r in rows:
        print(f"{r['epoch']:5d} | {r['train']:.5f}    | {r['held_out']:.5f}       | {r['drift']:.5f}")
    best_train = min(rows, key=lambda r: r["train"])["epoch"]
    best_held = min(rows, key=lambda r: r["held_out"])["epoch"]
    print(f"lowest train loss at epoch {best_train}; lowest held-out loss at epoch {best_held}; "
          f"overfitting begins (held-out +2 % over its minimum, train still lower): epoch {overfit_start(rows)}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
