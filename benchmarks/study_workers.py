"""Benchmark (issue #20): trials per minute with 1, 2, 4 and 8 `lrfind study` workers on one
PostgreSQL study, and the share of their time the workers spend waiting on the storage.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/study_workers.py [--workers 1 2 4 8]
        [--n-trials 16] [--trial-budget 8]

A throwaway PostgreSQL server on 127.0.0.1 (benchmarks/_postgres.py; fsync on, as a real server).
For each worker count, a new study on the tiny model (`--space tiny --score loss --pruner median`,
the shipped example dataset, one probe.json shared so no worker probes). Each worker is a process
(this script with --worker: `run_study`, one torch thread); all of them load the model and wait at
a barrier, so that the measured window holds trials only, not imports.

Printed per worker count: finished trials, the trial window (first trial's start to last trial's
end, from the storage's timestamps), trials per minute over it, and the storage wait: the time each
worker's main thread spent inside storage calls (lrfind.study.worker_storage.WorkerStorage times
every call, retries included; heartbeats, in their own thread, are not counted) as a share of its
time in the trial loop, mean and max over the workers, and storage calls per trial.

The machine has 2 CPU cores: with one torch thread per worker, more than 2 workers share the
cores, so trials per minute are CPU-bound and cannot grow past 2 workers; what the larger counts
show is the cost of sharing (contention, storage wait), not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (sets the offline environment before any Hugging Face import)

SPACE, SCORE, PRUNER = "tiny", "loss", "median"


def worker_main(args) -> None:
    """One worker: run_study, with the trial loop timed and held at the barrier until every worker is ready."""
    import lrfind.study.runner as runner
    import lrfind.study.study_end as study_end
    from lrfind.study.config import StudyConfig

    cfg = StudyConfig(dataset={"train_dir": args.dataset}, name=args.name, storage=args.storage, space=SPACE,
                      score=SCORE,
                      pruner=PRUNER, n_trials=args.n_trials, trial_budget=args.trial_budget, out=args.out,
                      progress=False)
    seen, real_optimize = {}, study_end.optimize_surviving

    def timed_optimize(study, *a, **k):
        backend = study._storage._backend
        Path(args.barrier, f"ready-{os.getpid()}").touch()
        while not Path(args.barrier, "go").exists():
            time.sleep(0.05)
        before, started = backend.storage_seconds, time.monotonic()
        calls_before = backend.storage_calls
        try:
            return real_optimize(study, *a, **k)
        finally:
            seen.update(loop_seconds=time.monotonic() - started, storage_seconds=backend.storage_seconds - before,
                        storage_calls=backend.storage_calls - calls_before)

    study_end.optimize_surviving = timed_optimize
    runner.run_study(cfg)
    Path(args.report).write_text(json.dumps(seen))


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(_common.REPO_ROOT))


def run_probe(dataset: Path, tmp: Path) -> Path:
    """One probe for every study (the tiny space's 64 px, batch 1), so that no worker probes."""
    out = tmp / "probe"
    subprocess.run([sys.executable, "-m", "lrfind", "probe", str(dataset), "--steps", "60", "--resolution", "64",
                    "--batch-size", "1", "--out", str(out), "--no-progress"], env=_env(), check=True,
                   stdout=subprocess.DEVNULL)
    return out / "probe.json"


def run_workers(n: int, dataset: Path, url: str, tmp: Path, n_trials: int, budget: int, probe: Path) -> dict:
    import shutil

    import optuna

    from lrfind.study.storage import engine_url

    name, out, barrier = f"w{n}", tmp / f"w{n}", tmp / f"barrier{n}"
    out.mkdir()
    barrier.mkdir()
    shutil.copy(probe, out / "probe.json")
    env = _env()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--dataset", str(dataset), "--name", name,
                               "--storage", url, "--out", str(out), "--n-trials", str(n_trials),
                               "--trial-budget", str(budget), "--barrier", str(barrier),
                               "--report", str(tmp / f"report-{n}-{i}.json")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for i in range(n)]
    while len(list(barrier.glob("ready-*"))) < n:
        if any(p.poll() not in (None, 0) for p in procs):
            raise SystemExit("a worker failed: " + next(p.stderr.read() for p in procs if p.poll()))
        time.sleep(0.1)
    (barrier / "go").touch()
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"a worker exited {p.returncode}: {err[-2000:]}")
    reports = [json.loads((tmp / f"report-{n}-{i}.json").read_text()) for i in range(n)]
    trials = optuna.load_study(study_name=name, storage=engine_url(url)).get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    window = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    shares = [r["storage_seconds"] / r["loop_seconds"] for r in reports if r.get("loop_seconds")]
    return {"workers": n, "finished": len(done), "failed": sum(t.state.name == "FAIL" for t in trials),
            "window_s": window, "per_minute": 60 * len(done) / window,
            "wait_mean": sum(shares) / len(shares), "wait_max": max(shares),
            "calls_per_trial": sum(r["storage_calls"] for r in reports) / max(1, len(done))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--trial-budget", type=int, default=8)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--dataset", "--name", "--storage", "--out", "--barrier", "--report"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)
    from _postgres import throwaway_postgres

    print(_common.machine_line())
    print(f"tiny model, --space {SPACE} --score {SCORE} --pruner {PRUNER} --trial-budget {args.trial_budget} "
          f"--n-trials {args.n_trials}; one torch thread per worker; PostgreSQL on 127.0.0.1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lrfind-bench-workers-") as tmp, throwaway_postgres() as url:
        dataset = _common.example_dataset(Path(tmp))
        probe = run_probe(dataset, Path(tmp))
        for n in args.workers:
            rows.append(run_workers(n, dataset, url, Path(tmp), args.n_trials, args.trial_budget, probe))
            r = rows[-1]
            print(f"{n} worker(s): {r['finished']} finished, {r['failed']} failed, window {r['window_s']:.1f} s, "
                  f"{r['per_minute']:.1f} trials/min, storage wait {100 * r['wait_mean']:.1f} % mean, "
                  f"{100 * r['wait_max']:.1f} % max, {r['calls_per_trial']:.0f} storage calls/trial", flush=True)
    print("\n| workers | finished | failed | trial window | trials/min | vs 1 worker | storage wait (mean, max) "
          "| storage calls/trial |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['finished']} | {r['failed']} | {r['window_s']:.1f} s | {r['per_minute']:.1f} | "
              f"×{r['per_minute'] / rows[0]['per_minute']:.2f} | {100 * r['wait_mean']:.1f} %, "
              f"{100 * r['wait_max']:.1f} % | {r['calls_per_trial']:.0f} |")


if __name__ == "__main__":
    main()
