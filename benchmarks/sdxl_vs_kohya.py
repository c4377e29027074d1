"""Benchmark (issue 16): an SDXL-size model on CPU, `lrfind train` / `lrfind study` beside kohya's
`sdxl_train_network.py`.

    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python benchmarks/sdxl_vs_kohya.py --work-dir /tmp/sdxlbench \
        --kohya-dir /tmp/kohya/sd-scripts --kohya-python /tmp/kohya/venv/bin/python [--steps 3,8] [--resolution 128]

The model: SDXL base's architecture from the shipped component configs (lrfind/models/configs/sdxl:
2.57 B-parameter U-Net, CLIP ViT-L and OpenCLIP bigG text encoders, the SDXL VAE), random init from
seed 0, fp32, built once in a child process and kept in --work-dir as a diffusers folder with the
SGM single file beside it (`lrfind model save`'s writer, lrfind/models/export.py). Both sides load
the single file (kohya's lower-peak path: no diffusers-to-original U-Net conversion). Data: the
example photos, 128 px, batch 1, LoRA dim 8 / alpha 8, UNet only, AdamW, constant lr 1e-4, fp32,
latents and text-encoder outputs cached (kohya: --cache_latents --cache_text_encoder_outputs), seed 1.

Each side runs as a fresh process at two step counts (3 and 8), alternating which side goes first
(kohya, lrfind, lrfind, kohya). A run's wall time is process start to exit; from the two runs,
s/step is the slope and the fixed cost of a run (imports, load, caching, first-step allocations,
saving; lrfind's closing validation pass) the intercept of wall = fixed + steps x slope. The median
gap between TensorBoard `loss/current` events is printed beside the slope as a check. Peak RSS:
the child's own (os.wait4's ru_maxrss). Warm trial: one `lrfind study` process of 2 trials at the
smaller step count (benchmarks/study_vs_kohya.py's worker records trial and step wall clocks); the
warm trial's fixed cost is the second trial's wall minus its steps. Printed: the table and the
ratios kohya / lrfind of this one run.

Memory (the machine's 24 GiB are shared): before each run the script refuses, with the figure, if
MemAvailable is below --need-gib; during a run it kills the child if MemAvailable falls under
--floor-gib and reports that side as not fitting, with the peak it reached.

Kohya's set-up (FACTS.md, "kohya sd-scripts beside us"): sd-scripts 48d368fa in its own venv
with torch 2.13.0 CPU; tokenizers come from --tokenizer_cache_dir (written here), never the hub.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (sets the offline environment before any Hugging Face import)

MODEL_NAME = "sdxl-random"
KOHYA_TOKENIZERS = ("openai_clip-vit-large-patch14", "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DIFFUSERS_OFFLINE": "1"}


# ---- pure arithmetic (tests/test_sdxl_bench_arithmetic.py) ----

def slope_intercept(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line wall = intercept + steps x slope through (steps, wall) points."""
    if len({n for n, _ in points}) < 2:
        raise ValueError("need runs at two or more different step counts")
    mean_n = statistics.fmean(n for n, _ in points)
    mean_t = statistics.fmean(t for _, t in points)
    slope = (sum((n - mean_n) * (t - mean_t) for n, t in points)
             / sum((n - mean_n) ** 2 for n, _ in points))
    return slope, mean_t - slope * mean_n


def warm_trial_fixed(trial: tuple[float, float], steps: list[tuple[float, float]]) -> tuple[float, int]:
    """A trial's wall minus the time of the steps inside it: (fixed seconds, steps counted)."""
    start, end = trial
    inside = [(a, b) for a, b in steps if a >= start and b <= end]
    return (end - start) - sum(b - a for a, b in inside), len(inside)


def ratio(kohya: float | None, lrfind: float | None) -> str:
    """kohya / lrfind as `x1.23`, or `-` when a side has no figure."""
    if kohya is None or lrfind is None or lrfind == 0:
        return "-"
    return f"x{kohya / lrfind:.2f}"


# ---- the model ----

def build_worker(work: Path) -> int:
    """(Child process.) The random SDXL-size model as a diffusers folder + SGM single file."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lrfind.models.components import SDComponents
    from lrfind.models.config_dirs import sdxl_config_dir
    from lrfind.models.export import save_model_folder
    from lrfind.models.tokenizer import get_clip_tokenizer, get_open_clip_tokenizer

    configs = sdxl_config_dir()

    def read(relative: str) -> dict:
        values = json.loads((configs / relative).read_text())
        return {k: v for k, v in values.items() if k != "architectures"}

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(read("unet/config.json"))
    vae = AutoencoderKL.from_config(read("vae/config.json"))
    text_encoder = CLIPTextModel(CLIPTextConfig(**read("text_encoder/config.json")))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**read("text_encoder_2/config.json")))
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval().requires_grad_(False)
    components = SDComponents(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=get_clip_tokenizer(),
                              noise_scheduler=DDPMScheduler.from_config(read("scheduler/scheduler_config.json")),
                              name=MODEL_NAME, family="sdxl", text_encoder_2=text_encoder_2,
                              tokenizer_2=get_open_clip_tokenizer())
    save_model_folder(components, work / "model", single_file=True)
    for folder, subfolder in zip(KOHYA_TOKENIZERS, ("tokenizer", "tokenizer_2")):
        shutil.copytree(work / "model" / subfolder, work / "tokenizers" / folder, dirs_exist_ok=True)
    return 0


def single_file(work: Path) -> Path:
    return work / "model" / f"{MODEL_NAME}.safetensors"


# ---- running one side under a memory watch ----

@dataclass
class Run:
    side: str
    steps: int
    wall_s: float
    peak_rss_gib: float
    step_walls: list[float]
    cpu_s: float = float("nan")  # user + system seconds of the process (the machine is shared)
    fitted: bool = True
    min_available_gib: float = float("nan")
    peak_anonymous_gib: float = 0.0

    def median_gap(self) -> float:
        gaps = [b - a for a, b in zip(self.step_walls[1:], self.step_walls[2:])]  # not the first step's
        return statistics.median(gaps) if gaps else float("nan")


def available_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**30


def require_memory(need_gib: float, what: str) -> None:
    free = available_gib()
    if free < need_gib:
        raise SystemExit(f"{what}: only {free:.1f} GiB available, {need_gib:.1f} GiB needed (--need-gib); "
                         "wait for other jobs to finish or lower --need-gib at your own risk")


def anonymous_gib(pid: int) -> float:
    """The process's anonymous (not file-backed) resident memory: what must fit in RAM. Its RSS also
    counts the checkpoint's pages when the weights stay memory-mapped (safetensors does that), which
    the kernel can drop and re-read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss_Anon:"):
                    return int(line.split()[1]) / 2**20
    except OSError:  # ended between two polls
        pass
    return 0.0


def run_watched(command: list[str], log_path: Path, floor_gib: float, cwd: Path | None = None):
    """Run command to its end; kill it if the machine's available memory drops below floor_gib.
    Returns (wall seconds, CPU seconds, peak RSS GiB, finished without being killed, lowest available GiB,
    peak anonymous GiB, polled every 2 s)."""
    env = dict(os.environ, **OFFLINE, PYTHONPATH=str(_common.REPO_ROOT))
    lowest, anonymous = [available_gib()], [0.0]
    killed = threading.Event()
    done = threading.Event()
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   start_new_session=True)

        def watch() -> None:
            polls = 0
            while not done.wait(0.5):
                lowest[0] = min(lowest[0], available_gib())
                polls += 1
                if polls % 4 == 0:
                    anonymous[0] = max(anonymous[0], anonymous_gib(process.pid))
                if lowest[0] < floor_gib:
                    killed.set()
                    os.killpg(process.pid, 9)  # its own session: only what this run started
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        watcher.join()
    wall = time.time() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and not killed.is_set():
        raise SystemExit(f"{command[1]} failed (exit {code}); see {log_path}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20, not killed.is_set(), lowest[0], anonymous[0]


def kohya_command(args, work: Path, out: Path, steps: int) -> list[str]:
    return [args.kohya_python, str(Path(args.kohya_dir) / "sdxl_train_network.py"),
            "--pretrained_model_name_or_path", str(single_file(work)), "--train_data_dir", str(work / "dataset"),
            "--caption_extension", ".txt", "--output_dir", str(out), "--output_name", "bench",
            "--logging_dir", str(out / "logs"), "--resolution", str(args.resolution), "--train_batch_size", "1",
            "--max_train_steps", str(steps), "--network_module", "networks.lora", "--network_dim", "8",
            "--network_alpha", "8", "--network_train_unet_only", "--learning_rate", "1e-4",
            "--optimizer_type", "AdamW", "--lr_scheduler", "constant", "--mixed_precision", "no",
            "--save_precision", "float", "--cache_latents", "--cache_text_encoder_outputs", "--seed", "1",
            "--max_data_loader_n_workers", "0", "--tokenizer_cache_dir", str(work / "tokenizers")]


def lrfind_command(args, work: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "lrfind", "train", str(work / "dataset"), "--model", str(single_file(work)),
            "--output-dir", str(out), "--output-name", "bench", "--logging-dir", str(out / "logs"),
            "--cache-dir", str(out / "cache"), "--resolution", str(args.resolution), "--train-batch-size", "1",
            "--max-train-steps", str(steps), "--network-module", "networks.lora", "--network-dim", "8",
            "--network-alpha", "8", "--network-train-unet-only", "--learning-rate", "1e-4",
            "--optimizer-type", "AdamW", "--lr-scheduler", "constant", "--mixed-precision", "no",
            "--save-precision", "float", "--seed", "1", "--no-xy-grid", "--no-save-state", "--no-progress"]


def run_side(args, work: Path, side: str, steps: int) -> Run:
    from vs_kohya import step_wall_times

    out = work / f"{side}-{steps}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    require_memory(args.need_gib, f"{side} ({steps} steps)")
    command = (kohya_command if side == "kohya" else lrfind_command)(args, work, out, steps)
    cwd = Path(args.kohya_dir) if side == "kohya" else None
    wall, cpu, peak, fitted, lowest, anon = run_watched(command, work / f"{side}-{steps}.log", args.floor_gib, cwd)
    walls = step_wall_times(out / "logs") if fitted else []
    run = Run(side, steps, wall, peak, walls, cpu, fitted, lowest, anon)
    print(f"{side} {steps} steps: {'wall %.1f s, CPU %.1f s' % (wall, cpu) if fitted else 'KILLED (memory)'}, "
          f"{len(walls)} step events, median step gap {run.median_gap():.2f} s, peak RSS {peak:.2f} GiB "
          f"(anonymous {anon:.2f}), "
          f"lowest available {lowest:.1f} GiB, load {os.getloadavg()[0]:.2f}", flush=True)
    return run


def study_worker(cpu_path: Path, times_path: Path, argv: list[str]) -> int:
    """(Child process.) study_vs_kohya's study worker (wall clocks), plus this process's CPU clock at
    each trial's start and end and each step's, in cpu_path (the machine is shared: wall stretches)."""
    import study_vs_kohya

    from lrfind.study import objective
    from lrfind.training import loop

    record = {"trials": [], "steps": []}
    micro, optimizer_step, call = loop._micro_step, loop._optimizer_step, objective.TrialObjective.__call__
    pending = {}

    def cpu_micro(parts, *rest):
        pending.setdefault("start", time.process_time())  # first micro-step of this optimizer step
        return micro(parts, *rest)

    def cpu_step(parts, state):
        optimizer_step(parts, state)
        record["steps"].append((pending.pop("start"), time.process_time()))

    def cpu_call(self, trial):
        started = time.process_time()
        try:
            return call(self, trial)
        finally:
            record["trials"].append((started, time.process_time()))

    loop._micro_step, loop._optimizer_step, objective.TrialObjective.__call__ = cpu_micro, cpu_step, cpu_call
    try:
        return study_vs_kohya.study_worker(times_path, argv)  # wraps the functions patched above
    finally:
        cpu_path.write_text(json.dumps(record))


def warm_trial(args, work: Path, steps: int) -> dict:
    """A 2-trial `lrfind study` in one process; the second (warm) trial's wall minus its steps."""
    import study_vs_kohya

    study_args = argparse.Namespace(trials=2, steps=steps, resolution=args.resolution, dataset_dir=work / "dataset")
    cli, out = study_vs_kohya.prepare_study(work, study_args)
    cli[cli.index("--model") + 1] = str(single_file(work))
    times, cpu_times = work / "study-times.json", work / "study-cpu.json"
    require_memory(args.need_gib, "lrfind study")
    command = [sys.executable, __file__, "--study-worker", str(cpu_times), str(times), "--", *cli]
    wall, cpu, peak, fitted, lowest, anon = run_watched(command, work / "study.log", args.floor_gib)
    if not fitted:
        print(f"lrfind study: KILLED (memory), peak RSS {peak:.2f} GiB", flush=True)
        return {"fitted": False, "peak_rss_gib": peak}
    record = json.loads(times.read_text())
    fixed, counted = warm_trial_fixed(tuple(record["trials"][1]), [tuple(s) for s in record["steps"]])
    first, _ = warm_trial_fixed(tuple(record["trials"][0]), [tuple(s) for s in record["steps"]])
    cpu_record = json.loads(cpu_times.read_text())
    warm_cpu, _ = warm_trial_fixed(tuple(cpu_record["trials"][1]), [tuple(s) for s in cpu_record["steps"]])
    pieces = {name: round(sum(d for t, d in calls if t >= record["trials"][1][0]), 2)
              for name, calls in record["pieces"].items()}
    result = {"fitted": True, "wall_s": wall, "cpu_s": cpu, "peak_rss_gib": peak, "peak_anonymous_gib": anon,
              "warm_fixed_s": fixed,
              "warm_fixed_cpu_s": warm_cpu, "first_trial_fixed_s": first,
              "steps_in_warm_trial": counted, "startup_s": record["trials"][0][0] - (time.time() - wall),
              "trial_s": [round(b - a, 1) for a, b in record["trials"]], "warm_pieces_s": pieces}
    print(f"lrfind study: {json.dumps(result)}", flush=True)
    return result


def print_table(fits: dict, runs: list[Run], study: dict) -> None:
    print("\n| | kohya sdxl_train_network.py | lrfind | kohya / lrfind |")
    print("|---|---|---|---|")

    def fig(side: str, key: str):
        return fits.get(side, {}).get(key)

    def cell(value, fmt: str) -> str:
        return "-" if value is None else fmt.format(value)

    peaks = {side: max((r.peak_rss_gib for r in runs if r.side == side), default=None) for side in ("kohya", "lrfind")}
    anon = {side: max((r.peak_anonymous_gib for r in runs if r.side == side), default=None)
            for side in ("kohya", "lrfind")}
    gaps = {side: statistics.median([r.median_gap() for r in runs if r.side == side and r.fitted] or [float("nan")])
            for side in ("kohya", "lrfind")}
    rows = [("s/step, wall (slope over the two runs)", fig("kohya", "slope"), fig("lrfind", "slope"), "{:.2f}"),
            ("s/step, wall (median TensorBoard gap, check)", gaps["kohya"], gaps["lrfind"], "{:.2f}"),
            ("CPU s/step (slope)", fig("kohya", "cpu_slope"), fig("lrfind", "cpu_slope"), "{:.2f}"),
            ("fixed cost of a run (intercept), wall s", fig("kohya", "fixed"), fig("lrfind", "fixed"), "{:.1f}"),
            ("fixed cost of a run (intercept), CPU s", fig("kohya", "cpu_fixed"), fig("lrfind", "cpu_fixed"), "{:.1f}"),
            ("fixed cost of a warm trial, wall s", fig("kohya", "fixed"), study.get("warm_fixed_s"), "{:.1f}"),
            ("fixed cost of a warm trial, CPU s", fig("kohya", "cpu_fixed"), study.get("warm_fixed_cpu_s"), "{:.1f}"),
            ("peak RSS, GiB", peaks["kohya"], peaks["lrfind"], "{:.2f}"),
            ("peak anonymous memory (RSS less the mapped checkpoint), GiB", anon["kohya"], anon["lrfind"], "{:.2f}")]
    for label, kohya, lrfind, fmt in rows:
        print(f"| {label} | {cell(kohya, fmt)} | {cell(lrfind, fmt)} | {ratio(kohya, lrfind)} |")
    print("(kohya has no warm trial: each of its trials is a run, so its fixed cost per trial is the run's.)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--build-worker"]:
        return build_worker(Path(argv[1]))
    if argv[:1] == ["--study-worker"]:
        return study_worker(Path(argv[1]), Path(argv[2]), argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="model, data and logs (the model is ~28 GB)")
    parser.add_argument("--kohya-dir", required=True, help="a kohya sd-scripts checkout")
    parser.add_argument("--kohya-python", required=True, help="the python of kohya's venv")
    parser.add_argument("--steps", default="3,8", help="two step counts per side (slope and intercept)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--need-gib", type=float, default=17.0, help="available memory required before a run")
    parser.add_argument("--floor-gib", type=float, default=1.0, help="kill a run if available memory drops below")
    parser.add_argument("--sides", default="kohya,lrfind,study", help="what to run, of kohya, lrfind, study")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.steps.split(",")]
    if len(set(counts)) != 2:
        parser.error("--steps: give two different step counts, e.g. 3,8")
    sides = args.sides.split(",")

    print(_common.machine_line(), flush=True)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if not single_file(work).is_file():
        require_memory(args.need_gib, "building the SDXL-size model")
        shutil.rmtree(work / "model", ignore_errors=True)
        started = time.time()
        wall, _, peak, fitted, _, _ = run_watched([sys.executable, __file__, "--build-worker", str(work)],
                                            work / "build.log", args.floor_gib)
        if not fitted:
            raise SystemExit(f"building the model ran out of memory (peak RSS {peak:.2f} GiB)")
        print(f"model built and saved in {time.time() - started:.0f} s, peak RSS {peak:.2f} GiB", flush=True)
    if not (work / "dataset").is_dir():
        _common.example_dataset(work)

    order = [("kohya", counts[0]), ("lrfind", counts[0]), ("lrfind", counts[1]), ("kohya", counts[1])]
    runs = [run_side(args, work, side, steps) for side, steps in order if side in sides]
    fits = {}
    for side in ("kohya", "lrfind"):
        done = [r for r in runs if r.side == side and r.fitted]
        if len({r.steps for r in done}) == 2:
            slope, fixed = slope_intercept([(r.steps, r.wall_s) for r in done])
            cpu_slope, cpu_fixed = slope_intercept([(r.steps, r.cpu_s) for r in done])
            fits[side] = {"slope": slope, "fixed": fixed, "cpu_slope": cpu_slope, "cpu_fixed": cpu_fixed}
    study = warm_trial(args, work, counts[0]) if "study" in sides else {}
    print_table(fits, runs, study)
    print(f"\n{_common.machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
