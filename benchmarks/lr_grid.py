"""Shared pieces of the probe benchmarks: one AdamW run -> its final validation loss, an lr grid,
a parabola fit of the grid in log-lr, and the probe itself on the same data.

Used by benchmarks/probe_accuracy.py and benchmarks/probe_rescale.py. Every run trains the UNet
LoRA only (as the probe does), at a constant lr, and is scored by the deterministic validation
loss (the training images at fixed timesteps and noise) after its last step.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install


@dataclass
class Bench:
    """What every run of one benchmark shares: data, model, feature cache, scratch folder."""

    dataset_dir: Path
    dataset: object
    components: object
    store: object
    scratch: Path
    resolution: int
    batch_size: int
    device: str = ""
    timings: dict = field(default_factory=dict)  # kind -> [seconds, steps]

    def add_time(self, kind: str, seconds: float, steps: int) -> None:
        spent = self.timings.setdefault(kind, [0.0, 0])
        spent[0] += seconds
        spent[1] += steps


def make_bench(scratch: Path, resolution: int, batch_size: int, model_seed: int = 0, model: str = "tiny") -> Bench:
    """A built-in model (`tiny`, `tiny-sdxl`: fixed seed; `tiny-pretrained`) and a copy of the shipped example dataset."""
    import torch

    from lrfind.cache import TensorStore
    from lrfind.config import DatasetConfig
    from lrfind.data.example import copy_example_dataset
    from lrfind.data.kohya import scan_dataset
    from lrfind.models.builtin import build_builtin

    # TF32 convolutions (cuDNN's default on a GPU) would round like fp16-ish inputs; keep fp32 as on the CPU.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dataset_dir = copy_example_dataset(scratch / "dataset")
    dataset = scan_dataset(DatasetConfig(train_dir=dataset_dir, resolution=resolution, batch_size=batch_size))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    return Bench(dataset_dir, dataset, build_builtin(model, seed=model_seed), TensorStore(scratch / "features"), scratch,
                 resolution, batch_size, device)


def adamw_val_loss(bench: Bench, lr: float, steps: int, seed: int, dim: int = 8, alpha: float = 8.0,
                   network: str = "lora") -> float:
    """Final validation loss of a constant-lr AdamW run; inf when the run diverged (NaN loss).

    `network`: a type of lrfind.network.types (lora, locon, lycoris_locon, loha, lokr), its defaults.
    """
    from lrfind.network.kinds import network_values
    from lrfind.errors import TrainingStopped
    from lrfind.training.config import TrainConfig
    from lrfind.training.kohya_names import train_config
    from lrfind.training.loop import run_loop
    from lrfind.training.setup import lora_run

    config = train_config(dict(train_data_dir=bench.dataset_dir, resolution=bench.resolution,
                         train_batch_size=bench.batch_size, network_dim=dim, network_alpha=alpha,
                         network_train_unet_only=True, optimizer_type="AdamW", learning_rate=lr,
                         **network_values(network, dim, alpha),
                         lr_scheduler="constant", max_train_steps=steps, validate_every_n_steps=steps,
                         seed=seed, output_dir=bench.scratch / "runs", progress=False))
    start = time.perf_counter()
    with lora_run(config, bench.components, bench.dataset, bench.store) as parts:
        try:
            state = run_loop(parts, [])
            loss = state.val_loss
        except TrainingStopped:
            loss = math.inf
    bench.add_time("adamw grid", time.perf_counter() - start, steps)
    return loss if loss is not None and math.isfinite(loss) else math.inf


def log_grid(low: float, high: float, points: int) -> list[float]:
    ratio = (high / low) ** (1 / (points - 1))
    return [low * ratio**i for i in range(points)]


@dataclass(frozen=True)
class GridBest:
    best_lr: float  # the grid point with the lowest loss
    fitted_lr: float  # the vertex of a parabola in log-lr through the best and its neighbours
    best_loss: float
    at_edge: bool  # the best is the first or last point: the optimum may lie outside the grid


def grid_best(lrs: Sequence[float], losses: Sequence[float]) -> GridBest:
    """Best grid point, refined by a parabola in log10(lr) through it and its two neighbours.

    Three points and numpy.polyfit: the vertex is kept only if the parabola opens upwards, and
    clamped to the neighbours' span (a sub-grid estimate, never an extrapolation).
    """
    import numpy as np

    finite = [i for i, loss in enumerate(losses) if math.isfinite(loss)]
    if not finite:
        raise ValueError("every run of the grid diverged: lower the grid's lrs")
    i = min(finite, key=lambda k: losses[k])
    at_edge = i == 0 or i == len(lrs) - 1
    fitted = lrs[i]
    if not at_edge and math.isfinite(losses[i - 1]) and math.isfinite(losses[i + 1]):
        x = np.log10([lrs[i - 1], lrs[i], lrs[i + 1]])
        a, b, _ = np.polyfit(x, [losses[i - 1], losses[i], losses[i + 1]], 2)
        if a > 0:
            fitted = float(10 ** float(np.clip(-b / (2 * a), x[0], x[2])))
    return GridBest(lrs[i], fitted, losses[i], at_edge)


def run_probe_on(bench: Bench, optimizer: str, seed: int, dim: int = 8, alpha: float = 8.0,
                 method: str = "dadaptation", steps: int | None = None) -> dict:
    """lrfind's probe (as `lrfind probe` runs it) on the bench's data: its probe.json report, as the file's dict."""
    from lrfind.config import DatasetConfig
    from lrfind.network.config import NetworkConfig
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import run_probe

    extra = {"steps": steps} if steps else {}
    out = bench.scratch / f"probe_{method}_{optimizer}_d{dim}_a{alpha:g}_s{seed}"
    cfg = ProbeConfig(dataset=DatasetConfig(train_dir=bench.dataset_dir, resolution=bench.resolution,
                                            batch_size=bench.batch_size),
                      optimizer=optimizer, method=method, network=NetworkConfig(dim=dim, alpha=alpha),
                      seed=seed, out=out, progress=False, **extra)
    start = time.perf_counter()
    report = run_probe(cfg, components=bench.components, dataset=bench.dataset, store=bench.store)
    n_steps = cfg.range_steps if method == "range" else cfg.steps
    bench.add_time(f"probe {method if method == 'range' else optimizer}", time.perf_counter() - start, n_steps)
    return report.to_dict()


def load_saved(path: Path) -> tuple[dict, list[dict]]:
    """(args as they were, raw results) from a benchmark's --json file, to re-summarise them with
    the current code (e.g. after a factor in lrfind.probe.derive changed) without retraining."""
    import ast
    import json

    saved = json.loads(Path(path).read_text())

    def value(text: str):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text  # a path or a plain word

    return {k: value(v) for k, v in saved["args"].items()}, saved["results"]


def fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "diverged" if x > 0 else "nan"
    return f"{x:.3g}" if isinstance(x, float) else str(x)
