"""Benchmark (issue 21, cheap trials): N trials as one `lrfind study` against N kohya runs.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/study_vs_kohya.py --kohya-dir /tmp/kohya/sd-scripts \
        --kohya-python /tmp/kohya/venv/bin/python [--trials 5] [--steps 20] [--resolution 128] \
        [--trials-at-once K] [--drift-weight W]

The same N trainings both ways, on the SD 1.5-size random model (saved once as a diffusers folder,
benchmarks/vs_kohya.py), the example photos at --resolution (bucketed), LoRA dim 8 alpha 8, UNet
only, AdamW (weight decay 0.01, both), constant lr, batch 1, fp32, seed 1; trial i trains at lr
1e-4 x LR_MULTIPLIERS[i] for --steps steps:
- lrfind: ONE `lrfind study` process (`--score loss --pruner none`), a space TOML whose only
  searched dimension is lr_multiplier, the five points enqueued beforehand (so the trainings are
  fixed, not sampled), a probe.json giving the base lr 1e-4 at dim 8/alpha 8 (no probe run). The
  study validates each trial once (32 UNet forwards: 8 images x 4 timesteps) and the base model
  once; kohya validates nothing.
- kohya: N `train_network.py` processes, one per lr, started from scratch.
Order: the first half of the kohya runs, the study, the rest (load drifts; sides alternate once).
With --trials-at-once K the study trains K trials at a time as one cohort (lrfind.study.cohort_trials):
a lock-step (one forward and backward for all members, then each member's optimizer step) counts as
one step of each member, its time shared out among them. --drift-weight 0: the study weighs no drift,
so measures none (lrfind's default objective weighs it 1 and measures it once a trial: 42 U-Net
forwards on the example photos).

The study process runs through this file (--study-worker), which only records wall clocks: when
each trial starts and ends, and each training step's start and end (patched around the loop's
micro-step and optimizer step). Printed, from one run: the study's wall time and the kohya runs'
sum, their ratio (target <= 0.5 at N = 5, 20 steps); the study's startup (process start to the
first trial) and its per-trial overhead beyond training steps ((first trial start to last trial
end - all step time) / N) against kohya's fixed cost per run (its wall minus steps x its median
step; target overhead <= 0.25 x that); the median step of each side (target lrfind <= 0.9 x kohya).
"""

from __future__ import annotations

import argparse
import contextlib
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

LR_MULTIPLIERS = (0.5, 1.0, 2.0, 4.0, 8.0, 0.25, 16.0, 0.125)
BASE_LR = 1e-4
STUDY = "cheap"

SPACE_TOML = """description = "study_vs_kohya: fixed settings, the lr alone differs"
network_dim = 8
network_alpha_fraction = 1.0
epochs = 1
lr_multiplier = [{multipliers}]
optimizer = "AdamW"
lr_scheduler = "constant"

[fixed]
resolution = {resolution}
train_batch_size = 1
network_train_unet_only = true
weight_decay = 0.01

[objective]
loss = 1.0
drift = {drift}
clip_i = 0.0
clip_t = 0.0

[budget]
trial_budget_steps = {steps}
eval_every_steps = {steps}
"""


def study_worker(times_path: Path, argv: list[str]) -> int:
    """Run `lrfind study argv` in this process, writing wall clocks of trials and steps to times_path."""
    import accelerate

    from lrfind.cli import main as lrfind_main
    from lrfind.study import cohort_trials, objective, trial_curves, trial_training
    from lrfind.training import cohort, loop, validation

    record = {"trials": [], "steps": [], "lock_steps": [], "optimizer_steps": [], "pieces": {}}
    micro, optimizer_step, call = loop._micro_step, loop._optimizer_step, objective.TrialObjective.__call__
    losses, backward = cohort._cohort_losses, accelerate.Accelerator.backward
    pending = {}
    _time_pieces(record["pieces"], objective, validation, trial_training, trial_curves)

    def timed_micro(parts, *args):
        pending.setdefault("start", time.time())  # first micro-step of this optimizer step
        return micro(parts, *args)

    def timed_losses(*args):  # --trials-at-once: a lock-step of the cohort starts
        pending["lock"] = time.time()
        return losses(*args)

    def timed_backward(self, loss, **kwargs):
        backward(self, loss, **kwargs)
        if "lock" in pending:  # the cohort's forward and backward; its members' optimizer steps follow
            record["lock_steps"].append((pending.pop("lock"), time.time()))

    def timed_step(parts, state):
        started = time.time()
        optimizer_step(parts, state)
        if "start" in pending:
            record["steps"].append((pending.pop("start"), time.time()))
        else:
            record["optimizer_steps"].append((started, time.time()))

    loop._micro_step, loop._optimizer_step = timed_micro, timed_step
    objective.TrialObjective.__call__ = _timed_trial(record, call)
    # --trials-at-once: one CohortObjective call trains the whole cohort
    cohort_trials.CohortObjective.__call__ = _timed_trial(record, cohort_trials.CohortObjective.__call__)
    cohort._cohort_losses, accelerate.Accelerator.backward = timed_losses, timed_backward
    try:
        return lrfind_main(argv)
    finally:
        times_path.write_text(json.dumps(record))


def _timed_trial(record: dict, call):
    """An objective's __call__, recording when each call (a trial, or a cohort of them) starts and ends."""
    def timed_call(self, trial):
        started = time.time()
        try:
            return call(self, trial)
        finally:
            record["trials"].append((started, time.time()))
    return timed_call


def _timed(pieces: dict, name: str, func):
    """func, adding each call's wall seconds to pieces[name] (a list, one entry per call)."""
    def wrapper(*args, **kwargs):
        started = time.time()
        try:
            return func(*args, **kwargs)
        finally:
            pieces.setdefault(name, []).append((started, time.time() - started))
    return wrapper


def _time_pieces(pieces: dict, objective, validation, trial_training, trial_curves) -> None:
    """Where a trial's time beyond its steps goes: the validation passes, the drift measurements, the
    network's set-up (lora_run's entry: caches, attach, optimizer) and teardown (its exit: detach),
    the LoRA save, the CLIP/sample scoring. Patched where the study looks them up."""
    from lrfind.training import cohort

    validation.ValidationSet.loss = _timed(pieces, "validation", validation.ValidationSet.loss)
    trial_curves.measure_drift = _timed(pieces, "drift", trial_curves.measure_drift)
    trial_training.save_lora = _timed(pieces, "save", trial_training.save_lora)
    objective.TrialObjective._score = _timed(pieces, "scoring", objective.TrialObjective._score)
    objective.TrialObjective._finish = _timed(pieces, "record", objective.TrialObjective._finish)
    run = trial_training.lora_run

    @contextlib.contextmanager
    def timed_run(*args, **kwargs):
        started = time.time()
        with run(*args, **kwargs) as parts:
            pieces.setdefault("set-up", []).append((started, time.time() - started))
            try:
                yield parts
            finally:
                ended = time.time()
        pieces.setdefault("teardown", []).append((ended, time.time() - ended))

    trial_training.lora_run = cohort.lora_run = timed_run


def write_probe_report(path: Path, lr: float) -> None:
    """A probe.json giving the base lr at dim 8 / alpha 8 (no probe run), as the study reads it (a
    hand-written dict lacked the derived keys the study requires and the study exited 2)."""
    from lrfind.artifacts.probe_report import DerivedLrs, ProbeReport

    derived = DerivedLrs(unet_lr=lr, adamw_lr=lr, lion_lr=lr / 3, lion_weight_decay_factor=3.0, text_encoder_lr=lr / 2,
                         text_encoder_lr_range=(lr / 4, lr), prodigy={})
    path.write_text(ProbeReport(status="ok", network_dim=8, network_alpha=8.0, derived=derived).to_json())


def prepare_study(work: Path, args) -> tuple[list[str], Path]:
    """The space TOML, probe.json and the study with its N points enqueued; returns the CLI args."""
    import optuna

    from lrfind.study.probe_point import PROBE_POINT_ATTR

    multipliers = LR_MULTIPLIERS[: args.trials]
    space = work / "space.toml"
    space.write_text(SPACE_TOML.format(multipliers=", ".join(map(str, multipliers)), resolution=args.resolution,
                                       steps=args.steps, drift=args.drift_weight))
    out = work / "studies" / STUDY
    shutil.rmtree(work / "studies", ignore_errors=True)
    out.mkdir(parents=True)
    write_probe_report(out / "probe.json", BASE_LR)
    storage = f"sqlite:///{(work / 'studies' / (STUDY + '.db')).as_posix()}"
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")
    study.set_user_attr(PROBE_POINT_ATTR, True)  # the points below, not the probe's, in this order
    for multiplier in multipliers:
        study.enqueue_trial({"lr_multiplier": multiplier})
    cli = ["study", str(args.dataset_dir), "--model", str(work / "model"), "--name", STUDY, "--space", str(space),
           "--n-trials", str(args.trials), "--score", "loss", "--pruner", "none", "--seed", "1", "--out", str(out),
           "--storage", storage, "--cache-dir", str(work / "lrfind-cache"), "--no-progress",
           "--trials-at-once", str(args.trials_at_once)]
    return cli, out


def _step_times(record: dict) -> tuple[list[float], int, int]:
    """(the time of each step, per trial step; steps; trial steps). A cohort's lock-step (one forward
    and backward of every member's micro-batch, then each member's optimizer step) counts as one
    step of each member: its time is shared out among them."""
    if not record["lock_steps"]:
        return [end - start for start, end in record["steps"]], len(record["steps"]), len(record["steps"])
    locks = sorted(record["lock_steps"])
    times, trial_steps = [], 0
    for i, (start, end) in enumerate(locks):
        until = locks[i + 1][0] if i + 1 < len(locks) else float("inf")
        members = [b - a for a, b in record["optimizer_steps"] if end <= a < until]  # its members' optimizer steps
        trial_steps += len(members)
        times += [(end - start + sum(members)) / max(1, len(members))] * max(1, len(members))
    return times, len(locks), trial_steps


def run_study_side(work: Path, cli: list[str], n_trials: int) -> dict:
    times = work / "study-times.json"
    log = work / "study.log"
    env = dict(os.environ, PYTHONPATH=str(_common.REPO_ROOT))
    started = time.time()
    with open(log, "w") as fh:
        process = subprocess.Popen([sys.executable, __file__, "--study-worker", str(times), "--", *cli],
                                   stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    finished = time.time()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the study failed; see {log}")
    record = json.loads(times.read_text())
    trials = record["trials"]
    span = trials[-1][1] - trials[0][0]
    step_s, steps, trial_steps = _step_times(record)
    return {"total_s": finished - started, "startup_s": trials[0][0] - started, "span_s": span,
            "trial_s": [round(end - start, 1) for start, end in trials], "steps": steps, "trial_steps": trial_steps,
            "step_s": statistics.median(step_s), "step_total_s": sum(step_s),
            "overhead_per_trial_s": (span - sum(step_s)) / n_trials, "peak_rss_gib": usage.ru_maxrss / 2**20,
            # seconds per trial of each piece inside the trials (the base model's pass before trial 0 is start-up)
            "pieces_per_trial_s": {name: sum(d for t, d in calls if t >= trials[0][0]) / n_trials
                                   for name, calls in record["pieces"].items()},
            "validation_calls": sum(1 for t, _ in record["pieces"].get("validation", []) if t >= trials[0][0])}


def run_kohya_side(vs_kohya, args, work: Path, index: int) -> dict:
    out = work / f"kohya-{index}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    command = vs_kohya.kohya_command(args, args.dataset_dir, work / "model", out, work / "tokenizers")
    command[command.index("--learning_rate") + 1] = repr(BASE_LR * LR_MULTIPLIERS[index])
    result = vs_kohya.run_side("kohya", command, out / "logs", warmup=3)
    result["fixed_s"] = result["total_s"] - result["steps"] * result["step_s"]
    return result


def check_same_lrs(out: Path, trials: int) -> None:
    """The study's trials trained at the lrs the kohya runs were given."""
    import optuna

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{(out.parent / (STUDY + '.db')).as_posix()}")
    for trial in sorted(study.trials, key=lambda t: t.number)[:trials]:
        values = trial.user_attrs.get("train_values", {})
        expected = BASE_LR * LR_MULTIPLIERS[trial.number]
        if abs(values.get("learning_rate", 0) - expected) > 1e-12 or values.get("max_train_steps") is None:
            print(f"WARNING: trial {trial.number} trained {values}, not lr {expected}")
        print(f"trial {trial.number}: lr {values.get('learning_rate')}, steps {trial.user_attrs.get('steps_done')}, "
              f"val_loss {trial.user_attrs.get('val_loss')}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--study-worker"]:
        return study_worker(Path(argv[1]), argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kohya-dir", required=True)
    parser.add_argument("--kohya-python", required=True)
    parser.add_argument("--trials", type=int, default=5, choices=range(1, len(LR_MULTIPLIERS) + 1))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--drift-weight", type=float, default=1.0,
                        help="the space's [objective] drift weight (1: lrfind's default; 0: drift is not measured)")
    parser.add_argument("--trials-at-once", type=int, default=1,
                        help="the study's --trials-at-once (1: one trial at a time, as before)")
    parser.add_argument("--work-dir", type=Path, help="keep model and data here (default: a temp folder)")
    args = parser.parse_args(argv)
    import vs_kohya

    print(_common.machine_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="lrfind-bench-study-kohya-") as scratch:
        work = args.work_dir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "model" / "model_index.json").is_file():
            vs_kohya.save_model(work)
        args.dataset_dir = work / "dataset" if (work / "dataset").is_dir() else _common.example_dataset(work)
        cli, out = prepare_study(work, args)
        kohya, study = [], None
        first_half = args.trials // 2
        for index in range(args.trials + 1):
            if index == first_half and study is None:
                study = run_study_side(work, cli, args.trials)
                print(f"lrfind study: {study['total_s']:.1f} s, startup {study['startup_s']:.1f} s, trials "
                      f"{study['trial_s']} s, {study['steps']} steps ({study['trial_steps']} trial steps) at "
                      f"{study['step_s']:.3f} s per trial step (median), overhead "
                      f"{study['overhead_per_trial_s']:.1f} s/trial, peak RSS {study['peak_rss_gib']:.2f} GiB",
                      flush=True)
                pieces = study["pieces_per_trial_s"]
                print("  overhead per trial, by piece: " + ", ".join(f"{k} {v:.2f} s" for k, v in pieces.items())
                      + f"; the rest {study['overhead_per_trial_s'] - sum(pieces.values()):.2f} s "
                      f"({study['validation_calls']} validation passes in the trials)", flush=True)
                continue
            k = run_kohya_side(vs_kohya, args, work, len(kohya))
            kohya.append(k)
            print(f"kohya run {len(kohya) - 1}: {k['total_s']:.1f} s, {k['steps']} steps at {k['step_s']:.3f} s, "
                  f"fixed {k['fixed_s']:.1f} s, peak RSS {k['peak_rss_gib']:.2f} GiB", flush=True)
        check_same_lrs(out, args.trials)
    print_summary(study, kohya)
    return 0


def print_summary(study: dict, kohya: list[dict]) -> None:
    kohya_wall = sum(k["total_s"] for k in kohya)
    kohya_fixed = statistics.median(k["fixed_s"] for k in kohya)
    kohya_step = statistics.median(k["step_s"] for k in kohya)
    rows = [("wall time, all trials, s", study["total_s"], kohya_wall, 0.5),
            ("per-trial overhead (lrfind) / fixed cost per run (kohya), s", study["overhead_per_trial_s"],
             kohya_fixed, 0.25),
            ("s per step (median)", study["step_s"], kohya_step, 0.9)]
    print("\n| | lrfind study | kohya runs | lrfind / kohya | target |")
    print("|---|---|---|---|---|")
    for label, mine, theirs, target in rows:
        ratio = mine / theirs
        print(f"| {label} | {mine:.2f} | {theirs:.2f} | x{ratio:.2f} | <= x{target} {'met' if ratio <= target else 'NOT met'} |")
    print(f"| study startup (start to first trial), s | {study['startup_s']:.1f} | | | |")
    print(f"\n{_common.machine_line()}")


if __name__ == "__main__":
    raise SystemExit(main())
