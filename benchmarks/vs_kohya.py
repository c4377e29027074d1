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

Networks (issue 13): first, the module and parameter counts of lrfind's and kohya's
`networks.lora` at dim 4 with the text encoder, on the SD 1.5 architecture (the shipped configs,
built on torch's meta device: shapes without weights), plain and with `conv_dim=4` (LoCon); kohya's
side imports kohya's own `networks/lora.py` in kohya's venv, one process per network (its
create_network extends a class-level target list in place). Every (name, down shape, up shape) is
compared. Then the timed runs, once per --variants entry (`lora`; `locon` = conv_dim 4 conv_alpha 1;
`loha`, `lokr` = `lycoris.kohya` with algo=loha / algo=lokr and LyCORIS's own defaults), with the
same network module and args on both sides (kohya's venv then needs `pip install lycoris-lora`).
"""

from __future__ import annotations

import argparse
import json
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
# variant -> (--network_module, --network_args), the same on both sides
VARIANTS = {"lora": ("networks.lora", []), "locon": ("networks.lora", ["conv_dim=4", "conv_alpha=1"]),
            "loha": ("lycoris.kohya", ["algo=loha", "preset={preset}"]),
            "lokr": ("lycoris.kohya", ["algo=lokr", "preset={preset}"])}
PRESET_FILE = "lycoris_full.toml"  # {preset} above: LyCORIS's `full` as lrfind builds it (see lycoris_preset_file)
# Run by kohya's python, in kohya's folder: kohya's networks.lora on the SD 1.5 architecture (meta).
KOHYA_COUNT_SCRIPT = """
import json, sys, torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel
from networks import lora
configs, dim, network_args, out = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
te_config = {k: v for k, v in json.load(open(configs + "/text_encoder/config.json")).items() if k != "architectures"}
with torch.device("meta"):
    unet = UNet2DConditionModel.from_config(json.load(open(configs + "/unet/config.json")))
    text_encoder = CLIPTextModel(CLIPTextConfig(**te_config))
network = lora.create_network(1.0, dim, 1.0, None, text_encoder, unet, **network_args)
modules = network.text_encoder_loras + network.unet_loras
json.dump({m.lora_name: [list(m.lora_down.weight.shape), list(m.lora_up.weight.shape)] for m in modules}, open(out, "w"))
"""


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


def sd15_meta_models():
    """The SD 1.5 UNet and text encoder on torch's meta device: shapes without weights."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lrfind.models.config_dirs import sd15_config_dir

    configs = sd15_config_dir()
    te_config = {k: v for k, v in json.loads((configs / "text_encoder/config.json").read_text()).items()
                 if k != "architectures"}
    with torch.device("meta"):
        return (UNet2DConditionModel.from_config(json.loads((configs / "unet/config.json").read_text())),
                CLIPTextModel(CLIPTextConfig(**te_config)))


def lycoris_preset_file(folder: Path) -> Path:
    """LyCORIS's preset `full` without the target class it also names layer by layer, as a TOML file.

    lycoris-lora 4.1.3's `full` selects SD's time embedding twice (by class and by name): kohya with
    `algo=loha` and no preset stops on "duplicated lora name: lora_unet_time_embedding_linear_1";
    lrfind drops the class (lrfind/network/lycoris_net.py). The same preset as a file, given to both
    sides, builds the same modules in both.
    """
    import toml

    from lrfind.network.lycoris_net import without_duplicate_targets, resolved_preset

    unet, _ = sd15_meta_models()
    path = folder / PRESET_FILE
    path.write_text(toml.dumps(without_duplicate_targets(resolved_preset("full"), unet)))
    return path


def lrfind_modules(dim: int, network_args: dict) -> dict[str, list]:
    """lrfind's networks.lora on the SD 1.5 architecture (meta device): name -> [down, up] shapes."""
    import types

    from lrfind.network import NetworkSpec, attach_network, kohya_module_name

    unet, text_encoder = sd15_meta_models()
    network = attach_network(types.SimpleNamespace(unet=unet, text_encoder=text_encoder),
                             NetworkSpec(dim, 1.0, train_text_encoder=True, network_args=network_args))
    modules = {kohya_module_name(part, path): [list(m.lora_down.weight.shape), list(m.lora_up.weight.shape)]
               for part in network.parts() for path, m in network.lora_layers(part)}
    network.detach()
    return modules


def kohya_modules(args, dim: int, network_args: dict, tmp: Path) -> dict[str, list]:
    from lrfind.models.config_dirs import sd15_config_dir

    out = tmp / "kohya_modules.json"
    subprocess.run([args.kohya_python, "-c", KOHYA_COUNT_SCRIPT, str(sd15_config_dir()), str(dim),
                    json.dumps(network_args), str(out)], cwd=args.kohya_dir, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def parameter_count(modules: dict[str, list]) -> int:
    def numel(shape):
        n = 1
        for d in shape:
            n *= d
        return n

    return sum(numel(down) + numel(up) for down, up in modules.values())


def print_network_counts(args, tmp: Path, dim: int = 4) -> None:
    print(f"| networks.lora, dim {dim}, with the text encoder, SD 1.5 architecture | modules (UNet + TE) | "
          "parameters | same names and shapes |")
    print("|---|---|---|---|")
    for label, network_args in (("plain", {}), ("conv_dim=4 (LoCon)", {"conv_dim": "4"})):
        sides = {"kohya": kohya_modules(args, dim, network_args, tmp), "lrfind": lrfind_modules(dim, network_args)}
        same = sides["kohya"] == sides["lrfind"]
        for name, modules in sides.items():
            unet = sum(k.startswith("lora_unet_") for k in modules)
            print(f"| {name}, {label} | {len(modules)} ({unet} + {len(modules) - unet}) | "
                  f"{parameter_count(modules):,} | {'yes' if same else 'NO'} |", flush=True)


def kohya_command(args, dataset: Path, model: Path, out: Path, tokenizers: Path,
                  network: tuple = VARIANTS["lora"]) -> list[str]:
    module, network_args = network
    return [args.kohya_python, str(Path(args.kohya_dir) / "train_network.py"),
            "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(dataset),
            "--caption_extension", ".txt", "--output_dir", str(out), "--output_name", "bench",
            "--logging_dir", str(out / "logs"), "--resolution", str(args.resolution), "--train_batch_size", "1",
            "--max_train_steps", str(args.steps), "--network_module", module, "--network_dim", "8",
            "--network_alpha", "8", "--network_train_unet_only", "--learning_rate", "1e-4", "--optimizer_type",
            "AdamW", "--lr_scheduler", "constant", "--mixed_precision", "no", "--save_precision", "float",
            "--cache_latents", "--seed", "1", "--max_data_loader_n_workers", "0",
            "--tokenizer_cache_dir", str(tokenizers)] + (["--network_args", *network_args] if network_args else [])


def lrfind_command(args, dataset: Path, model: Path, out: Path, network: tuple = VARIANTS["lora"]) -> list[str]:
    module, network_args = network
    return [sys.executable, "-m", "lrfind", "train", str(dataset), "--model", str(model),
            "--output-dir", str(out), "--output-name", "bench", "--logging-dir", str(out / "logs"),
            "--cache-dir", str(out / "cache"), "--resolution", str(args.resolution), "--train-batch-size", "1",
            "--max-train-steps", str(args.steps), "--network-module", module, "--network-dim", "8", "--network-alpha", "8",
            "--network-train-unet-only", "--learning-rate", "1e-4", "--optimizer-type", "AdamW",
            "--lr-scheduler", "constant", "--mixed-precision", "no", "--save-precision", "float", "--seed", "1",
            "--no-xy-grid", "--no-save-state"] + (["--network-args", *network_args] if network_args else [])


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
    parser.add_argument("--variants", default="lora,locon", help=f"timed networks, of {', '.join(VARIANTS)}")
    parser.add_argument("--no-counts", dest="counts", action="store_false", help="skip the module counts")
    args = parser.parse_args(argv)

    print(_common.machine_line())
    with tempfile.TemporaryDirectory(prefix="lrfind-bench-kohya-") as scratch:
        tmp = args.work_dir or Path(scratch)
        if args.counts:
            print_network_counts(args, tmp)
        if not (tmp / "model" / "model_index.json").is_file():
            save_model(tmp)
        dataset = tmp / "dataset" if (tmp / "dataset").is_dir() else _common.example_dataset(tmp)
        for variant in args.variants.split(","):
            results = timed_runs(args, tmp, dataset, variant)
            module, network_args = VARIANTS[variant]
            print(f"\n{variant} ({module}, network args: {' '.join(network_args) or 'none'})")
            print_summary(results)
    return 0


def timed_runs(args, tmp: Path, dataset: Path, variant: str) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {"kohya": [], "lrfind": []}
    module, network_args = VARIANTS[variant]
    network = (module, [a.format(preset=tmp / PRESET_FILE) for a in network_args])
    if module == "lycoris.kohya":
        lycoris_preset_file(tmp)
    for round_number in range(args.rounds):
        order = ["kohya", "lrfind"] if round_number % 2 == 0 else ["lrfind", "kohya"]
        for name in order:
            out = tmp / f"{variant}-{name}-{round_number}"
            shutil.rmtree(out, ignore_errors=True)  # a kept --work-dir: no old run's logs or cache
            out.mkdir()
            command = (kohya_command(args, dataset, tmp / "model", out, tmp / "tokenizers", network)
                       if name == "kohya" else lrfind_command(args, dataset, tmp / "model", out, network))
            result = run_side(name, command, out / "logs", args.warmup)
            results[name].append(result)
            print(f"{variant} round {round_number} {name}: {result['steps']} steps, {result['step_s']:.3f} s/step "
                  f"(median of {result['timed']}), first step done {result['first_step_s']:.1f} s after start, "
                  f"total {result['total_s']:.1f} s, peak RSS {result['peak_rss_gib']:.2f} GiB", flush=True)
    return results


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
