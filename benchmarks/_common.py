"""Helpers shared by the training-loop benchmarks (loop_overhead.py, vs_naive.py).

Data: a copy of the shipped real-photo example dataset in a temp folder. Models: the built-in
tiny model, or SD 1.5-size components built from the configs shipped in lrfind/models/configs/sd15
with random weights (nothing is downloaded). Timing: per-step wall times recorded by a loop
callback, medians, and the process's peak RSS.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# Before any Hugging Face import: nothing may be fetched from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

REPO_ROOT = Path(__file__).resolve().parents[1]


def example_dataset(tmp: Path) -> Path:
    from lrfind.data.example import copy_example_dataset

    return copy_example_dataset(Path(tmp) / "dataset")


def train_config(dataset_dir: Path, tmp: Path, **overrides):
    """A unet-only AdamW LoRA TrainConfig for benchmarking; overrides win."""
    from lrfind.training.config import TrainConfig
    from lrfind.training.kohya_names import train_config

    values = dict(train_data_dir=dataset_dir, resolution=64, train_batch_size=1, max_train_steps=10,
                  network_dim=8, network_alpha=8.0, learning_rate=1e-4, network_train_unet_only=True,
                  optimizer_type="AdamW", lr_scheduler="constant", output_dir=Path(tmp) / "out",
                  output_name="bench", progress=False, seed=1)
    values.update(overrides)
    return train_config(values)


def scan(config):
    from lrfind.data.kohya import scan_dataset

    return scan_dataset(config.dataset)


def build_sd15_random(seed: int = 0):
    """SD 1.5-size UNet, VAE and CLIP text encoder from the shipped configs, random init, fp32."""
    import json

    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lrfind.models.components import SDComponents
    from lrfind.models.config_dirs import sd15_config_dir
    from lrfind.models.tokenizer import get_clip_tokenizer

    configs = sd15_config_dir()

    def read(relative: str) -> dict:
        return json.loads((configs / relative).read_text())

    te_config = {k: v for k, v in read("text_encoder/config.json").items() if k != "architectures"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(read("unet/config.json"))
        vae = AutoencoderKL.from_config(read("vae/config.json"))
        text_encoder = CLIPTextModel(CLIPTextConfig(**te_config))
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return SDComponents(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=get_clip_tokenizer(),
                        noise_scheduler=DDPMScheduler.from_config(read("scheduler/scheduler_config.json")),
                        name="sd15-random")


def build_model(name: str):
    """`tiny` or `sd15` (random SD 1.5-size)."""
    if name == "tiny":
        from lrfind.models.tiny import build_tiny

        return build_tiny(seed=0)
    if name == "sd15":
        return build_sd15_random(seed=0)
    raise SystemExit(f"unknown model {name!r}: use tiny or sd15")


class StepTimer:
    """Loop callback: wall and CPU time of each optimizer step, from `start()` or the last step.

    CPU time (this process, all its threads) is kept beside wall time because the machine is
    shared: with OMP_NUM_THREADS=1 another process's load stretches wall time but hardly the CPU
    seconds this process spends on a step.
    """

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._last = None

    def start(self) -> None:
        self._last = (time.perf_counter(), time.process_time())

    def on_step_end(self, state=None) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall.append(now[0] - self._last[0])
        self.cpu.append(now[1] - self._last[1])
        self._last = now

    def drop(self, n: int) -> "StepTimer":
        """Forget the first n steps (warm-up)."""
        self.wall, self.cpu = self.wall[n:], self.cpu[n:]
        return self


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def machine_line() -> str:
    """Date, machine, threads and current load: what a reader needs to judge the numbers."""
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} {os.cpu_count()} cores, "
            f"torch {torch.__version__} on CPU, torch threads {torch.get_num_threads()} "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), load average {load}")
