"""Several worker processes on one study, on one machine: `lrfind study ... --workers N | --devices 0,1`.

Each worker is a child `lrfind study` process on the same storage (the study's journal by default,
lrfind.study.journal; --storage as given otherwise), pinned to its device with CUDA_VISIBLE_DEVICES
when --devices names them. Optuna coordinates the workers through the storage: trial numbers are
unique, and every worker stops once the study has n_trials finished trials (runner._StopWhenDone).

- The first worker starts alone until the study holds the probe and the baseline validation loss;
  the others then start and reuse them (otherwise each would probe the same model).
- A worker that dies (killed, crashed) is started again, at most MAX_RESTARTS times per slot; a
  starting worker fails and retries the RUNNING trials of dead local workers (by pid, storage.py),
  and so does every worker after each trial.
- Ctrl-C or SIGTERM to this process: each worker gets one SIGINT (they run in their own sessions, so
  the terminal's Ctrl-C reaches only this process), marks its running trial failed and exits;
  workers still running after STOP_GRACE_S are killed. --timeout goes to every worker (the later
  ones get what is left of it), so all stop starting trials at the same moment.
- CPU threads are split between the workers (cpu_threads_per_worker): N workers each running as
  many torch threads as the machine has cores spin against each other in OpenMP barriers, which
  made tiny LyCORIS trials 4x slower per step on two cores than one worker after the other.

Library code: what happens is reported through `on_event(text)`; the CLI prints it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from lrfind.errors import Interrupted, LrfindError
from lrfind.study.preflight import check_input_models, check_output_places
from lrfind.study.runner import finished_trials
from lrfind.study.storage import open_storage

MAX_RESTARTS = 2
STOP_GRACE_S = 60.0
POLL_S = 0.5
WORKER_CONFIG = "worker_config.json"


@dataclass
class Worker:
    slot: int
    device: Optional[str]
    process: Optional[subprocess.Popen] = None
    restarts: int = 0
    exit_codes: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"worker {self.slot}" + (f" (device {self.device})" if self.device is not None else "")


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_threads_per_worker(workers: int, environ: dict, cpu_count: int) -> int:
    """torch threads for each of `workers` processes: the threads the launcher itself may use
    (OMP_NUM_THREADS as set, else the cores it may run on) shared out, one at least."""
    given = environ.get("OMP_NUM_THREADS", "")
    total = int(given) if given.isdigit() and int(given) > 0 else cpu_count
    return max(1, total // max(1, workers))


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_config(cfg, timeout_s: Optional[float]) -> dict:
    """One worker's StudyConfig as JSON: what the user set (so the nested training options stay
    'given', lrfind.training.run_options.given), the shared storage, one worker, and its timeout."""
    data = json.loads(cfg.model_dump_json(exclude_unset=True))
    data.update(storage=cfg.storage_url(), workers=1, name=cfg.name,
                out=str(cfg.out_dir()))
    data.pop("devices", None)
    if timeout_s is not None:
        data["timeout"] = str(max(1, int(timeout_s)))
    return data


def _study_is_ready(cfg) -> bool:
    """The study holds the probe and the baseline loss (what the first worker prepares)."""
    import optuna

    try:
        storage = open_storage(cfg.storage_url(), cfg.heartbeat_interval, cfg.grace_period)
        if cfg.name not in optuna.study.get_all_study_names(storage):
            return False
        attrs = optuna.load_study(study_name=cfg.name, storage=storage).user_attrs
    except (LrfindError, KeyError, ValueError):
        return False
    return "baseline_val_loss" in attrs and "probe" in attrs


class WorkerPool:
    def __init__(self, cfg, on_event: Callable[[str], None] = lambda text: None):
        self.cfg, self.on_event = cfg, on_event
        devices = cfg.device_list or [None] * cfg.worker_count
        self.workers = [Worker(slot, device) for slot, device in enumerate(devices)]
        self.started = time.monotonic()

    def _remaining_timeout(self) -> Optional[float]:
        total = self.cfg.timeout_seconds
        return None if total is None else total - (time.monotonic() - self.started)

    def _start(self, worker: Worker) -> None:
        remaining = self._remaining_timeout()
        folder = self.cfg.out_dir() / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / f"{worker.slot}_{WORKER_CONFIG}"
        config_path.write_text(json.dumps(worker_config(self.cfg, remaining)), encoding="utf-8")
        env = dict(os.environ)
        threads = str(cpu_threads_per_worker(len(self.workers), os.environ, _usable_cores()))
        env.update({name: threads for name in THREAD_VARIABLES})
        if worker.device is not None:
            env["CUDA_VISIBLE_DEVICES"] = worker.device
        command = [sys.executable, "-m", "lrfind", "study", str(self.cfg.dataset.train_dir),
                   "--worker-config", str(config_path)]
        # The worker starts with SIGINT blocked (the mask survives exec) and unblocks it once it can
        # handle it (lrfind.cli.deferred_interrupt): a stop that lands while Python is still starting
        # (its site module, the first imports) stays pending instead of killing it with a traceback.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            worker.process = subprocess.Popen(command, env=env, start_new_session=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.on_event(f"started {worker.name}, pid {worker.process.pid}")

    def _wait_until_ready(self, first: Worker) -> None:
        """Until the study has its probe and baseline, or the first worker exits."""
        while first.process.poll() is None and not _study_is_ready(self.cfg):
            time.sleep(POLL_S * 4)

    def run(self) -> int:
        """Run the workers to the end; the exit code: 0 when every worker finished cleanly."""
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            first, rest = self.workers[0], self.workers[1:]
            self._start(first)
            if rest and not _study_is_ready(self.cfg):
                self._wait_until_ready(first)
                code = first.process.poll()
                if code is not None and code > 0:  # it said why (probe, dataset, options); killed: restarted below
                    return code
            for worker in rest:
                self._start(worker)
            return self._supervise()
        except KeyboardInterrupt:
            self.stop()
            raise Interrupted("study interrupted; every worker marked its running trial failed. Resume with the "
                              "same command") from None
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _supervise(self) -> int:
        while True:
            running = [w for w in self.workers if w.process is not None and w.process.poll() is None]
            for worker in self.workers:
                if worker.process is None or worker.process.returncode is None or worker in running:
                    continue
                code = worker.process.returncode
                worker.exit_codes.append(code)
                worker.process = None
                if code < 0 and worker.restarts < MAX_RESTARTS and self._study_unfinished():
                    worker.restarts += 1
                    self.on_event(f"{worker.name} died (signal {-code}); starting it again, its trial is retried")
                    self._start(worker)
                    running.append(worker)
                elif code != 0:
                    self.on_event(f"{worker.name} exited with code {code}")
            if not running:
                codes = [w.exit_codes[-1] for w in self.workers if w.exit_codes]
                return next((abs(c) for c in codes if c != 0), 0)
            time.sleep(POLL_S)

    def _study_unfinished(self) -> bool:
        import optuna

        remaining = self._remaining_timeout()
        if remaining is not None and remaining <= 0:
            return False
        storage = open_storage(self.cfg.storage_url(), self.cfg.heartbeat_interval, self.cfg.grace_period)
        return finished_trials(optuna.load_study(study_name=self.cfg.name, storage=storage)) < self.cfg.n_trials

    def stop(self) -> None:
        """One SIGINT to each running worker; kill those still running after STOP_GRACE_S."""
        alive = [w for w in self.workers if w.process is not None and w.process.poll() is None]
        for worker in alive:
            worker.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in alive:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
                self.on_event(f"{worker.name} did not stop within {STOP_GRACE_S:.0f} s: killed")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_workers(cfg, on_event: Callable[[str], None] = lambda text: None) -> int:
    """Run cfg.worker_count local workers on one study; see the module doc."""
    check_output_places(cfg)
    check_input_models(cfg)
    if cfg.storage_url().startswith("sqlite:///"):
        on_event(f"study {cfg.name} is in a sqlite file; several workers may wait on its lock. A new study "
                 "with --workers uses a journal file instead")
    return WorkerPool(cfg, on_event).run()


def read_worker_config(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
