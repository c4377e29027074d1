"""Benchmark (issue #5): does a long `lrfind study` keep its memory flat, trial after trial?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/study_memory.py [--trials 50] [--trial-budget 4]
        [--score loss] [--pruner hyperband] [--sampler auto] [--tracemalloc]

One process runs `run_study` on the tiny model and the shipped example dataset (64 px) with the
tiny preset's space (dims 4/8, AdamW and Lion, constant and cosine, 1-3 epochs, repeats 1-2) and
very short trials (--trial-budget optimizer steps of the longest run; one validation, at the end,
which Hyperband may prune on, so both completed and pruned trials' cleanup run). After every
trial, from an Optuna callback (the runner's stop callback, wrapped), it records the process's
resident memory now (VmRSS) and at its peak so far (VmHWM, /proc/self/status), the number of
objects the garbage collector tracks, the torch tensors among them, and the modules of the shared
UNet and text encoder (a LoRA wrapper left behind would add modules every trial).

Printed: RSS and peak RSS at trial 5 and at the last trial and their ratios, and the growth per
trial from a least-squares line over trials 5..last (MiB/trial, and objects/trial); target
(issue #5): memory stays flat across 50 trials. With --tracemalloc, the 15 source lines whose
Python allocations grew most between trial 5 and the last (tracemalloc sees Python's allocator,
not torch's tensor storage; tensors are counted separately).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (sets the offline environment before any Hugging Face import)

FIRST = 5  # the trial the growth is measured from: the first trials allocate once-only things


def proc_status_mib() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


class MemoryLog:
    """One row per finished trial: what the process holds right after it."""

    def __init__(self, components, trace: bool):
        self.components, self.trace = components, trace
        self.rows: list[dict] = []
        self.snapshots: dict[int, object] = {}
        self.started = time.perf_counter()

    def record(self, trial) -> None:
        import torch

        gc.collect()  # what is still referenced, not what waits for the collector
        objects = gc.get_objects()
        with warnings.catch_warnings():  # isinstance() on torch's deprecated module aliases warns
            warnings.simplefilter("ignore", FutureWarning)
            tensors = sum(1 for o in objects if isinstance(o, torch.Tensor))
        rss, peak = proc_status_mib()
        modules = sum(1 for _ in self.components.unet.modules()) + sum(1 for _ in self.components.text_encoder.modules())
        n = len(self.rows) + 1
        self.rows.append({"trial": n, "number": trial.number, "state": trial.state.name, "rss": rss, "peak": peak,
                          "objects": len(objects), "tensors": tensors, "modules": modules,
                          "seconds": time.perf_counter() - self.started})
        del objects
        if self.trace and n == FIRST:
            import tracemalloc

            self.snapshots[n] = tracemalloc.take_snapshot()

    def last_snapshot(self) -> None:
        if self.trace:
            import tracemalloc

            self.snapshots[len(self.rows)] = tracemalloc.take_snapshot()


def logging_stopper(log: MemoryLog):
    """runner._StopWhenDone, recording memory after each trial before it decides whether to stop."""
    from lrfind.study import runner

    class StopAndRecord(runner._StopWhenDone):
        def __call__(self, study, trial) -> None:
            log.record(trial)
            super().__call__(study, trial)

    return StopAndRecord


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def run(args, scratch: Path) -> MemoryLog:
    from lrfind.config import ModelConfig
    from lrfind.models import loading
    from lrfind.study import runner
    from lrfind.study.config import StudyConfig

    dataset = _common.example_dataset(scratch)
    components = loading.load_components(ModelConfig(model=args.model))
    loading.load_components = lambda cfg, dtype=None: components  # keep a handle on the shared model
    cfg = StudyConfig(dataset={"train_dir": dataset}, name="memory", space="tiny", n_trials=args.trials,
                      trial_budget=args.trial_budget,
                      score=args.score, pruner=args.pruner, sampler=args.sampler, out=scratch / "studies" / "memory",
                      cache_dir=scratch / "cache", progress=False, probe_steps=40,
                      # per-trial seeds: every trial trains (with one seed for all, the tiny space's
                      # repeated points would reuse their twins and train nothing)
                      trial_seed="per-trial")
    log = MemoryLog(components, args.tracemalloc)
    plain = runner._StopWhenDone
    runner._StopWhenDone = logging_stopper(log)
    try:
        if args.tracemalloc:
            import tracemalloc

            tracemalloc.start(8)
        runner.run_study(cfg)
        log.last_snapshot()
    finally:
        runner._StopWhenDone = plain
        shutil.rmtree(cfg.out_dir() / "trials", ignore_errors=True)
    return log


def report(log: MemoryLog) -> None:
    rows = log.rows
    print("| trial | state | RSS MiB | peak RSS MiB | gc objects | tensors | modules | s since start |")
    for r in rows:
        if r["trial"] <= 6 or r["trial"] % 5 == 0 or r["trial"] == len(rows):
            print(f"| {r['trial']} | {r['state']} | {r['rss']:.1f} | {r['peak']:.1f} | {r['objects']:,} | {r['tensors']:,} "
                  f"| {r['modules']:,} | {r['seconds']:.1f} |")
    first, last = rows[FIRST - 1], rows[-1]
    tail = rows[FIRST - 1:]
    xs = [r["trial"] for r in tail]
    print(f"\ntrial {FIRST}: RSS {first['rss']:.1f} MiB, peak {first['peak']:.1f} MiB; trial {last['trial']}: RSS "
          f"{last['rss']:.1f} MiB, peak {last['peak']:.1f} MiB")
    print(f"ratio trial {last['trial']} / trial {FIRST}: RSS x{last['rss'] / first['rss']:.3f}, peak "
          f"x{last['peak'] / first['peak']:.3f}")
    print(f"growth per trial (least squares, trials {FIRST}..{last['trial']}): RSS {slope(xs, [r['rss'] for r in tail]):+.3f} "
          f"MiB, peak {slope(xs, [r['peak'] for r in tail]):+.3f} MiB, gc objects {slope(xs, [r['objects'] for r in tail]):+.1f}, "
          f"tensors {slope(xs, [r['tensors'] for r in tail]):+.2f}, modules {slope(xs, [r['modules'] for r in tail]):+.2f}")
    states = [r["state"] for r in rows]
    print(f"{states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, {states.count('FAIL')} failed; "
          f"{last['seconds']:.0f} s for {len(rows)} trials")
    if FIRST in log.snapshots and len(rows) in log.snapshots:
        print(f"\ntracemalloc: the 15 lines whose Python allocations grew most from trial {FIRST} to {len(rows)}:")
        for stat in log.snapshots[len(rows)].compare_to(log.snapshots[FIRST], "lineno")[:15]:
            print(f"  {stat}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--model", default="tiny", choices=("tiny", "tiny-pretrained"), help="built-in base model")
    parser.add_argument("--trial-budget", type=int, default=4, help="steps of the space's longest trial")
    parser.add_argument("--score", default="loss", choices=("loss", "full"), help="loss only, or loss + CLIP samples")
    parser.add_argument("--sampler", default="auto", choices=("auto", "gp", "tpe"), help="lrfind study --sampler")
    parser.add_argument("--pruner", default="hyperband", choices=("hyperband", "median", "none"))
    parser.add_argument("--tracemalloc", action="store_true", help="also diff Python allocations (slower)")
    args = parser.parse_args(argv)
    if args.trials <= FIRST:
        raise SystemExit(f"--trials must be more than {FIRST}")
    print(_common.machine_line())
    with tempfile.TemporaryDirectory(prefix="lrfind-bench-memory-") as tmp:
        log = run(args, Path(tmp))
    report(log)
    print(f"\n{_common.machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
