"""Errors that reach the user as one line and exit code 2 (bad input), never a traceback."""


class LrfindError(Exception):
    """Bad input the user can fix. The message names the file (or option) and the fix.

    The CLI prints it on one line and exits with code 2.
    """


class DatasetError(LrfindError):
    """A dataset folder, image or caption that cannot be used."""


class ModelError(LrfindError):
    """A model path or file that cannot be loaded."""


class ConfigError(LrfindError):
    """An option, config file or combination of values that is impossible."""


class TrainingStopped(Exception):
    """A run stopped for a reason the caller should report (NaN loss, pruned, interrupted).

    Not a user error: callers decide what it means (a study marks the trial failed or pruned).
    """

    def __init__(self, reason: str, step: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.step = step


class DiskFullError(LrfindError):
    """The disk (or quota) filled up while writing `path`; nothing half-written was left behind."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


class TrainingDiverged(TrainingStopped):
    """The loss became NaN or infinite: the run cannot go on. Says at which step, at which lr.

    A final run reports it as bad input (exit 2: lower the lr); a study fails the trial with it.
    """

    def __init__(self, loss: float, step: int, lrs: dict[str, float], d_lrs: dict[str, float] | None = None):
        shown = ", ".join(f"{name} lr {lr:.3g}" for name, lr in lrs.items()) or "lr unknown"
        adaptive = ", ".join(f"{name} d*lr {v:.3g}" for name, v in (d_lrs or {}).items())
        lowest = min(lrs.values(), default=0.0)
        hint = f" (e.g. {lowest / 10:.3g})" if lowest > 0 and lowest != float("inf") else ""
        super().__init__(
            f"training diverged at step {step}: the loss became {loss} (not finite) with {shown}"
            f"{' (' + adaptive + ')' if adaptive else ''}; lower --learning-rate{hint}"
            " (and --unet-lr/--text-encoder-lr if given), or use bf16/fp32 if fp16 overflowed",
            step,
        )
        self.loss, self.lrs = loss, dict(lrs)


class LrfindWarning(UserWarning):
    """Something the user should know but that does not stop the run (a very long run, alpha > dim).

    The CLI prints each as one line `lrfind: warning: ...` on stderr.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying what the user should know (how to resume). The CLI prints it as one line."""


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA or host allocation that failed (torch raises these as RuntimeErrors)."""
    import torch  # lazy: this module is imported by everything, torch only by what trains

    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())
