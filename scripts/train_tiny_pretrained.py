"""Train the `tiny-pretrained` model from scratch on CPU (run once; its output is committed).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/train_tiny_pretrained.py [--out DIR] [--quick]

The tiny SD 1.x architecture of `lrfind/models/tiny.py`, trained on crops of the photographs in
scikit-image's wheel, so that a LoRA on it starts from a real prior instead of random weights:
1. the VAE (reconstruction + a small KL term) on 32 px crops (it is convolutional; 64 px work);
2. its latent space rescaled exactly (quant convs) so SD's scaling factor 0.18215 gives unit std;
3. the UNet and the CLIP text encoder together, on the noise-prediction loss of SD (epsilon,
   SD 1.5's DDPM schedule), 64 px images (8x8 latents), captions as kohya-style tags, 10 % of
   captions dropped so classifier-free guidance works.
The concepts of the example dataset and of the tests (`chelsea`/`cat`, `coffee`) are kept out, so
a LoRA on them learns something new. Everything is seeded and runs in a fixed order: the same torch
version and thread count give the same bytes. Written: unet/vae/text_encoder .safetensors (fp16)
and manifest.json (how they were made: commit, data, steps, losses, time, sha256 of each file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lrfind.models.tiny import build_tiny  # noqa: E402
from lrfind.models.text_encoding import encode_token_chunks, tokenize_prompts  # noqa: E402

DEFAULT_OUT = ROOT / "lrfind" / "assets" / "tiny_pretrained"
HELD_OUT_SOURCES = ("chelsea", "cat", "coffee")  # the example dataset's and the tests' concepts
# scikit-image source -> caption tags (what is in the picture). Greyscale sources say so.
SOURCES = {
    "astronaut": "astronaut, woman, portrait, smiling, space suit, american flag",
    "camera": "cameraman, man, camera, tripod, coat, outdoors, monochrome",
    "rocket": "rocket, launch pad, tower, blue sky, outdoors",
    "hubble_deep_field": "galaxies, space, stars, night sky, dark",
    "immunohistochemistry": "microscopy, cells, tissue, stained, purple, brown",
    "brick": "brick wall, bricks, texture, monochrome",
    "grass": "grass, lawn, texture, monochrome",
    "gravel": "gravel, stones, pebbles, texture, monochrome",
    "moon": "moon, lunar surface, craters, monochrome",
    "page": "page, book, printed text, paper, monochrome",
    "text": "text, letters, writing, monochrome",
    "coins": "coins, money, metal, monochrome",
    "clock": "clock, wall clock, numbers, monochrome",
    "colorwheel": "color wheel, rainbow, colorful, circle",
    "logo": "logo, snake, python logo, blue and yellow, white background",
    "retina": "retina, fundus, eye, blood vessels, orange, red",
    "horse": "horse, silhouette, black and white",
    "stereo_motorcycle": "motorcycle, motorbike, garage, indoors",
    "cell": "cell, microscopy, monochrome",
    "checkerboard": "checkerboard, chessboard pattern, black and white",
    "shepp_logan_phantom": "phantom, medical scan, ellipses, monochrome",
    "lfw_subset": "face, person, portrait, photo, monochrome",
}
CROPS_PER_SOURCE = 24  # per greyscale photograph
COLOUR_WEIGHT = 6  # colour photographs get 6x the crops: most of the wheel's photographs are grey
IMAGE_PX = 64
VAE_CROP_PX = 32


@dataclass(frozen=True)
class Stage:
    steps: int
    batch: int
    lr: float


@dataclass(frozen=True)
class Recipe:
    vae: Stage
    unet: Stage
    crops_per_source: int = CROPS_PER_SOURCE
    max_faces: int = 96  # lfw_subset holds 200 small grey faces: each one image


FULL = Recipe(vae=Stage(1200, 16, 1e-3), unet=Stage(2400, 16, 5e-4))
QUICK = Recipe(vae=Stage(3, 4, 1e-3), unet=Stage(3, 4, 5e-4), crops_per_source=2, max_faces=4)  # tests, smoke runs


def _source_arrays(name: str) -> list[np.ndarray]:
    """RGB uint8 arrays of one scikit-image source (lfw_subset: its 200 small faces)."""
    from skimage import data

    raw = getattr(data, name)()
    if isinstance(raw, tuple):  # stereo_motorcycle: (left, right, disparity)
        raw = raw[0]
    raw = np.asarray(raw)
    frames = list(raw) if name == "lfw_subset" else [raw]
    out = []
    for frame in frames:
        if frame.dtype == bool:
            frame = frame.astype(np.uint8) * 255
        elif frame.dtype != np.uint8:
            frame = np.clip(frame / max(float(frame.max()), 1e-8) * 255, 0, 255).astype(np.uint8)
        if frame.ndim == 2:
            frame = np.stack([frame] * 3, axis=-1)
        if frame.shape[-1] == 4:  # RGBA logo on white
            alpha = frame[..., 3:4].astype(np.float32) / 255
            frame = (frame[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        out.append(frame)
    return out


def crop_caption(tags: str, scale: float) -> str:
    if scale < 0.45:
        return tags + ", close-up"
    if scale > 0.9:
        return tags + ", full view"
    return tags


def make_images(seed: int = 0, crops_per_source: int = CROPS_PER_SOURCE,
                max_faces: int = 96) -> tuple[torch.Tensor, list[str]]:
    """Deterministic 64 px crops in [-1, 1] ([N, 3, 64, 64]) and their captions."""
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for name, tags in SOURCES.items():
        assert name not in HELD_OUT_SOURCES
        frames = _source_arrays(name)
        colour = any(not np.array_equal(f[..., 0], f[..., 1]) for f in frames[:1])
        n = min(len(frames), max_faces) if len(frames) > 1 else crops_per_source * (COLOUR_WEIGHT if colour else 1)
        for i in range(n):
            frame = frames[i % len(frames)]
            h, w = frame.shape[:2]
            scale = 1.0 if len(frames) > 1 else float(rng.uniform(0.3, 1.0))
            side = max(8, int(min(h, w) * scale))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(frame[top:top + side, left:left + side])
            crop = crop.resize((IMAGE_PX, IMAGE_PX), Image.Resampling.LANCZOS)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            images.append(np.asarray(crop, dtype=np.float32) / 127.5 - 1.0)
            captions.append(crop_caption(tags, scale))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), captions


def train_vae(vae, images: torch.Tensor, stage: Stage, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    vae.train().requires_grad_(True)
    opt = torch.optim.Adam(vae.parameters(), lr=stage.lr)
    ema = None
    for step in range(stage.steps):
        idx = torch.randint(0, len(images), (stage.batch,), generator=gen)
        off = torch.randint(0, IMAGE_PX - VAE_CROP_PX + 1, (2,), generator=gen).tolist()
        x = images[idx, :, off[0]:off[0] + VAE_CROP_PX, off[1]:off[1] + VAE_CROP_PX]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        loss = (recon - x).pow(2).mean() + 0.1 * (recon - x).abs().mean() + 1e-6 * posterior.kl().mean()
        for group in opt.param_groups:  # cosine decay to 10 %
            group["lr"] = stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / stage.steps)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0:
            print(f"vae step {step}/{stage.steps} loss {ema:.4f}", flush=True)
    vae.eval().requires_grad_(False)
    return float(ema)


@torch.no_grad()
def rescale_latents(vae, images: torch.Tensor) -> float:
    """Scale the latent space exactly so that latents x scaling_factor have unit std.

    The encoder's quant_conv makes (mean, logvar); the decoder's post_quant_conv reads z. Scaling
    the mean rows by c, shifting logvar by 2 log c and dividing post_quant_conv's input weights by c
    is the same model in another unit, so SD's scaling factor (0.18215) stays right.
    """
    means = torch.cat([vae.encode(images[i:i + 64]).latent_dist.mean for i in range(0, len(images), 64)])
    c = 1.0 / (float(means.std()) * vae.config.scaling_factor)
    ch = vae.config.latent_channels
    vae.quant_conv.weight[:ch] *= c
    vae.quant_conv.bias[:ch] *= c
    vae.quant_conv.bias[ch:] += 2 * math.log(c)
    vae.post_quant_conv.weight /= c
    return c


def train_unet(components, latents: torch.Tensor, captions: list[str], stage: Stage, seed: int) -> float:
    unet, te, sched = components.unet, components.text_encoder, components.noise_scheduler
    gen = torch.Generator().manual_seed(seed)
    ids = tokenize_prompts(components.tokenizer, captions)
    empty = tokenize_prompts(components.tokenizer, [""])
    unet.train().requires_grad_(True)
    te.train().requires_grad_(True)
    opt = torch.optim.AdamW([{"params": unet.parameters(), "lr": stage.lr},
                             {"params": te.parameters(), "lr": stage.lr}], weight_decay=0.0)
    base = [g["lr"] for g in opt.param_groups]
    ema = None
    for step in range(stage.steps):
        idx = torch.randint(0, len(latents), (stage.batch,), generator=gen)
        flip = torch.rand(stage.batch, generator=gen) < 0.5
        lat = latents[idx] * components.vae.config.scaling_factor
        lat = torch.where(flip[:, None, None, None], lat.flip(-1), lat)
        batch_ids = ids[idx].clone()
        batch_ids[torch.rand(stage.batch, generator=gen) < 0.1] = empty[0]
        noise = torch.randn(lat.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (stage.batch,), generator=gen)
        emb = encode_token_chunks(te, batch_ids)
        pred = unet(sched.add_noise(lat, noise, t), t, emb).sample
        loss = (pred - noise).pow(2).mean()
        warm = min(1.0, (step + 1) / 100)
        decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / stage.steps))
        for group, lr in zip(opt.param_groups, base):
            group["lr"] = lr * warm * decay
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + list(te.parameters()), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0:
            print(f"unet step {step}/{stage.steps} loss {ema:.4f}", flush=True)
    unet.eval().requires_grad_(False)
    te.eval().requires_grad_(False)
    return float(ema)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train(out: Path, recipe: Recipe, seed: int = 0) -> dict:
    from safetensors.torch import save_file

    started = time.time()
    torch.manual_seed(seed)
    components = build_tiny(seed)
    images, captions = make_images(seed, recipe.crops_per_source, recipe.max_faces)
    vae_loss = train_vae(components.vae, images, recipe.vae, seed + 1)
    factor = rescale_latents(components.vae, images)
    with torch.no_grad():
        latents = torch.cat([components.vae.encode(images[i:i + 64]).latent_dist.mean
                             for i in range(0, len(images), 64)])
    unet_loss = train_unet(components, latents, captions, recipe.unet, seed + 2)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for part in ("unet", "vae", "text_encoder"):
        state = {k: v.detach().to(torch.float16).contiguous()
                 for k, v in getattr(components, part).state_dict().items()}
        path = out / f"{part}.safetensors"
        save_file(state, str(path), metadata={"format": "pt"})
        files[part] = {"file": path.name, "sha256": sha256(path)}
    manifest = {
        "name": "tiny-pretrained",
        "architecture": "lrfind tiny SD 1.x (lrfind/models/tiny.py configs)",
        "made_by": "scripts/train_tiny_pretrained.py",
        "script_commit": _git_commit(),
        "seed": seed,
        "data": {"sources": list(SOURCES), "held_out": list(HELD_OUT_SOURCES), "images": len(images),
                 "image_px": IMAGE_PX, "vae_crop_px": VAE_CROP_PX, "package": "scikit-image (skimage.data)"},
        "stages": {"vae": vars(recipe.vae), "unet": vars(recipe.unet)},
        "trained": {"vae": True, "unet": True, "text_encoder": True},
        "final_losses": {"vae_reconstruction": round(vae_loss, 5), "unet_noise_mse": round(unet_loss, 5)},
        "latent_rescale": round(factor, 6),
        "stored_dtype": "float16",
        "seconds": round(time.time() - started, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="a few steps only (tests, smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    manifest = train(args.out, QUICK if args.quick else FULL, args.seed)
    print(json.dumps({k: manifest[k] for k in ("final_losses", "seconds", "files")}, indent=2))


if __name__ == "__main__":
    main()
