"""Benchmark (the developers' speed bar): `lrfind train` beside kohya sd-scripts' `train_network.py`.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/vs_kohya.py --kohya-dir /tmp/kohya/sd-scripts \
        --kohya-python /tmp/kohya/venv/bin/python [--steps 20] [--warmup 3] [--resolution 128] [--rounds 1]

Both train a LoRA (dim 8, alpha 8, UNet only, AdamW, constant lr 1e-4, batch 1, fp32, latents
cached, seed 1) on the same SD 1.5-size model (random init from the shipped configs, saved once as
a local diffusers folder) and the same copy of the example dataset at --resolution, each as its
own process started from scratch, one after the other (kohya first; with --rounds 2 the order
alternates). Both write TensorBoard `loss/current` once per step; a step's time is the gap between
consecutive events' wall times (the same clock for both), the first --warmup steps not counted.
Fixed cost: from starting the process to the end of its first step (imports, model load, latent
caching, first step). Peak RSS: the process's own (os.wait4). Printed: the medians and the ratios
kohya / lrfind measured in this run.

Setting up kohya here, offline (FACTS.md: kohya sd-scripts beside us): clone it (commit 48d368fa),
make a venv with `pip install torch==2.13.0`, its requirements without `bitsandbytes` and `-e .`,
plus `dadaptation`, and `pip install --no-deps torchvision==0.28.0`; that torchvision fails to
import on the CPU torch from `torchvision/_meta_registrations.py`, which kohya does not need:
empty that file. The tokenizer comes from --tokenizer_cache_dir (written here), never the hub.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (sets the offline environment before any Hugging Face import)

KOHYA_TOKENIZER = "openai_clip-vit-large-patch14"  # the folder kohya's --tokenizer_cache_dir looks for


def save_model(folder: Path) -> None:
    """The random SD 1.5-size model as a diffusers folder, and the tokenizer where kohya looks."""
    from diffusers import StableDiffusionPipeline

    c = _common.build_sd15_random(seed=0)
    pipe = StableDiffusionPipeline(vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
                                   scheduler=c.noise_scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder / "model")
    # kohya's transformers (4.54) builds the slow CLIPTokenizer from vocab.json + merges.txt, which
    # newer transformers no longer write: copy lrfind's offline-built pair beside tokenizer.json.
    from lrfind.models.tokenizer import tokenizer_files_dir

    for target in (folder / "model" / "tokenizer", folder / "tokenizers" / KOHYA_TOKENIZER):
        c.tokenizer.save_pretrained(target)
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(tokenizer_files_dir() / name, target / name)


def kohya_command(args, dataset: Path, model: Path, out: Path, tokenizers: Path) -> list[str]:
    return [args.kohya_python, str(Path(args.kohya_dir) / "train_network.py"),
            "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(dataset),
            "--caption_extension", ".txt", "--output_dir", str(out), "--output_name", "bench",
            "--logging_dir", str(out / "logs"), "--resolution", str(args.resolution), "--train_batch_size", "1",
            "--max_train_steps", str(args.steps), "--network_module", "networks.lora", "--network_dim", "8",
            "--network_alpha", "8", "--network_train_unet_only", "--learning_rate", "1e-4", "--optimizer_type",
            "AdamW", "--lr_scheduler", "constant", "--mixed_precision", "no", "--save_precision", "float",
            "--cache_latents", "--seed", "1", "--max_data_loader_n_workers", "0",
            "--tokenizer_cache_dir", str(tokenizers)]


def lrfind_command(args, dataset: Path, model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lrfind", "train", str(dataset), "--model", str(model),
            "--output-dir", str(out), "--output-name", "bench", "--logging-dir", str(out / "logs"),
            "--cache-dir", str(out / "cache"), "--resolution", str(args.resolution), "--train-batch-size", "1",
            "--max-train-steps", str(args.steps), "--network-dim", "8", "--network-alpha", "8",
            "--network-train-unet-only", "--learning-rate", "1e-4", "--optimizer-type", "AdamW",
            "--lr-scheduler", "constant", "--mixed-precision", "no", "--save-precision", "float", "--seed", "1",
            "--no-xy-grid", "--no-save-state"]


def step_wall_times(log_dir: Path) -> list[float]:
    """Wall time of each `loss/current` event under log_dir, by step (one event per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    times: dict[int, float] = {}
    for events in log_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        if "loss/current" in acc.Tags().get("scalars", []):
            times.update({e.step: e.wall_time for e in acc.Scalars("loss/current")})
    return [times[s] for s in sorted(times)]


def run_side(name: str, command: list[str], log_dir: Path, warmup: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DIFFUSERS_OFFLINE="1",
               PYTHONPATH=str(_common.REPO_ROOT))
    started = time.time()
    with open(log_dir.parent / f"{name}.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=Path(command[1]).parent if name == "kohya" else None)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    finished = time.time()
    if process.returncode != 0:
        raise SystemExit(f"{name} failed (exit {process.returncode}); see {log_dir.parent / (name + '.log')}")
    walls = step_wall_times(log_dir)
    gaps = [b - a for a, b in zip(walls, walls[1:])][max(0, warmup - 1):]
    return {"name": name, "steps": len(walls), "step_s": statistics.median(gaps), "first_step_s": walls[0] - started,
            "total_s": finished - started, "peak_rss_gib": usage.ru_maxrss / 2**20, "timed": len(gaps)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kohya-dir", required=True, help="a kohya sd-scripts checkout")
    parser.add_argument("--kohya-python", required=True, help="the python of kohya's venv")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="first steps not timed")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=1, help="runs per side, alternating which goes first")
    parser.add_argument("--work-dir", type=Path, help="keep model, data, logs here (default: a temp folder)")
    args = parser.parse_args(argv)

    print(_common.machine_line())
    results: dict[str, list[dict]] = {"kohya": [], "lrfind": []}
    with tempfile.TemporaryDirectory(prefix="lrfind-bench-kohya-") as scratch:
        tmp = args.work_dir or Path(scratch)
        if not (tmp / "model" / "model_index.json").is_file():
            save_model(tmp)
        dataset = tmp / "dataset" if (tmp / "dataset").is_dir() else _common.example_dataset(tmp)
        for round_number in range(args.rounds):
            order = ["kohya", "lrfind"] if round_number % 2 == 0 else ["lrfind", "kohya"]
            for name in order:
                out = tmp / f"{name}-{round_number}"
                shutil.rmtree(out, ignore_errors=True)  # a kept --work-dir: no old run's logs or cache
                out.mkdir()
                command = (kohya_command(args, dataset, tmp / "model", out, tmp / "tokenizers") if name == "kohya"
                           else lrfind_command(args, dataset, tmp / "model", out))
                result = run_side(name, command, out / "logs", args.warmup)
                results[name].append(result)
                print(f"round {round_number} {name}: {result['steps']} steps, {result['step_s']:.3f} s/step "
                      f"(median of {result['timed']}), first step done {result['first_step_s']:.1f} s after start, "
                      f"total {result['total_s']:.1f} s, peak RSS {result['peak_rss_gib']:.2f} GiB", flush=True)
    print_summary(results)
    return 0


def print_summary(results: dict) -> None:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print("| | kohya train_network.py | lrfind train | kohya / lrfind |")
    print("|---|---|---|---|")
    for key, label in (("step_s", "s per step (median)"), ("first_step_s", "start to end of first step, s"),
                       ("total_s", "whole run, s"), ("peak_rss_gib", "peak RSS, GiB")):
        k, lr = med("kohya", key), med("lrfind", key)
        print(f"| {label} | {k:.3f} | {lr:.3f} | x{k / lr:.2f} |")
    print(f"\n{_common.machine_line()}")


if __name__ == "__main__":
    raise SystemExit(main())
