"""Study throughput with 1 vs 2 local CPU workers (`lrfind study --workers N`), tiny model (issue 18).

Each side is a fresh study of the same space, budget and probe (one probe run first, copied into
every study folder), run as a user runs it: `python -m lrfind study ... --workers N` in a
subprocess. Trials per minute = finished trials / (last trial's end - first trial's start), read
from the study's storage, so process start-up and the baseline pass are left out; wall time of the
whole command is printed beside, and so are trained steps per minute (pruned and swept trials
train different lengths, so trials/min alone can favour the side whose trials were pruned sooner). Sides alternate (1, 2, 1, 2, ...) within one run; the ratio is
2-worker / 1-worker throughput of each pair, and their median. --trial-seed per-trial: with one
shared training seed a repeated point is copied, not trained, which would flatter whichever side
repeated more.

On a machine with C cores the ratio is bounded by about C (and by 2 for 2 workers); with other
work on the machine it is lower. Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/study_workers_cpu.py [--pairs 2] [--n-trials 8]
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
from _common import REPO_ROOT, example_dataset  # noqa: E402  (sets the offline environment)


def run_probe(dataset: Path, out: Path) -> Path:
    from lrfind.config import DatasetConfig
    from lrfind.probe.config import ProbeConfig
    from lrfind.probe.probe import run_probe as probe

    probe(ProbeConfig(dataset=DatasetConfig(train_dir=dataset, resolution=64, batch_size=1), steps=40, out=out,
                      progress=False))
    return out / "probe.json"


def one_study(dataset: Path, root: Path, name: str, probe: Path, workers: int, args) -> dict:
    import optuna

    from lrfind.study.config import StudyConfig

    out = root / "studies" / name
    out.mkdir(parents=True)
    shutil.copy(probe, out / "probe.json")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "lrfind", "study", str(dataset), "--name", name, "--space", "tiny",
               "--out", str(out), "--n-trials", str(args.n_trials), "--trial-budget", str(args.trial_budget),
               "--score", "loss", "--trial-seed", "per-trial", "--no-progress", "--workers", str(workers)]
    started = time.monotonic()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - started
    cfg = StudyConfig(dataset={"train_dir": dataset}, name=name, out=out, workers=workers)
    from lrfind.study.storage import open_storage

    study = optuna.load_study(study_name=name, storage=open_storage(cfg.storage_url(), 30, 120))
    done = [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    steps = sum(int(t.user_attrs.get("steps_done") or 0) for t in done)
    return {"workers": workers, "trials": len(done), "span_s": span, "per_min": 60 * len(done) / span, "wall_s": wall,
            "steps_per_min": 60 * steps / span,
            "storage": cfg.storage_url().split(":")[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--trial-budget", type=int, default=40)
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS "
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.n_trials} trials of {args.trial_budget} steps")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = example_dataset(root)
        probe = run_probe(dataset, root / "probe")
        ratios, step_ratios = [], []
        for pair in range(args.pairs):
            rows = {}
            for workers in ((1, 2) if pair % 2 == 0 else (2, 1)):
                rows[workers] = one_study(dataset, root, f"p{pair}w{workers}", probe, workers, args)
                r = rows[workers]
                print(f"pair {pair} workers {workers} ({r['storage']}): {r['trials']} trials in {r['span_s']:.1f} s "
                      f"= {r['per_min']:.1f} trials/min, {r['steps_per_min']:.0f} trained steps/min; command wall "
                      f"{r['wall_s']:.1f} s", flush=True)
            ratios.append(rows[2]["per_min"] / rows[1]["per_min"])
            step_ratios.append(rows[2]["steps_per_min"] / rows[1]["steps_per_min"])
            print(f"pair {pair}: 2 workers / 1 worker = {ratios[-1]:.2f}x trials/min, {step_ratios[-1]:.2f}x "
                  "trained steps/min", flush=True)
        print(f"median ratio over {len(ratios)} pairs: {statistics.median(ratios):.2f}x trials/min, "
              f"{statistics.median(step_ratios):.2f}x trained steps/min "
              f"(load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
