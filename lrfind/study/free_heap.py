"""Memory a finished or failed trial freed, handed back: to the OS (an Optuna callback) and to the device."""

from __future__ import annotations

import functools


def return_free_heap(study=None, trial=None) -> None:
    """Optuna callback: hand freed heap back to the OS (glibc's malloc_trim; elsewhere nothing).

    glibc keeps memory that a trial's tensors and the GP sampler's growing matrices freed; over a
    study RSS then creeps up though nothing is live (benchmarks/RESULTS.md, study memory).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def free_memory() -> None:
    """Collect what a failed or abandoned run left (tracebacks hold its tensors) and empty the CUDA cache,
    so the next run starts with the device's memory free."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, looked up once (find_library runs ldconfig), or None elsewhere."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, Windows, musl): nothing to do
        return None
