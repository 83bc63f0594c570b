"""What goes wrong during training, and what the trainer makes of it.

Ctrl-C / SIGTERM (:class:`StopRequests`): the first finishes the step, saves and stops; a
second quits at once. Running out of memory, failing writes and a diverging run become one-line
WeftErrors that say what to change and which saved state is kept.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from weft import interrupts
from weft.config import TrainConfig
from weft.errors import WeftError

log = logging.getLogger("weft")

_OOM_ERRORS: tuple[type[BaseException], ...] = (
    getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
)


def is_out_of_memory(exc: BaseException) -> bool:
    # The CPU allocator reports exhaustion as a plain RuntimeError.
    return isinstance(exc, _OOM_ERRORS) or (
        isinstance(exc, RuntimeError)
        and ("can't allocate memory" in str(exc) or "not enough memory" in str(exc)))


def out_of_memory(device: torch.device, config: TrainConfig, saved_step: int | None,
                  optimizer: torch.optim.Optimizer) -> WeftError:
    """The error to raise, after freeing what the failed step held (its gradients, and the
    GPU's cached blocks), so that whatever runs next in this process has the memory."""
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return WeftError(
        f"out of memory on {device} (--batch-size {config.batch_size}, --seq-len "
        f"{config.seq_len}): lower --batch-size, --seq-len or --hidden-size; "
        + (f"the saved state (step {saved_step}) is kept" if saved_step is not None
           else "nothing was saved"))


def diverged(what: str, run_dir: Path, saved_step: int | None) -> WeftError:
    kept = (f"the last good state (step {saved_step}) is kept in {run_dir}"
            if saved_step is not None else "no state had been saved yet")
    return WeftError(f"training stopped: {what}. Lower --lr, keep --grad-clip on, or use "
                     f"--precision fp32; {kept}")


@contextmanager
def failed_writes(what: str, run_dir: Path, saved_step: int | None,
                  resume_command: str) -> Iterator[None]:
    """A failed write (disk full, permissions) stops the run with the saved state kept."""
    try:
        yield
    except OSError as exc:
        hint = ("free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else "check the directory's permissions and free space")
        kept = (f"the previous saved state (step {saved_step}) is kept: {hint}, then "
                f"resume with `{resume_command} {run_dir}`"
                if saved_step is not None else f"{hint} and start again")
        raise WeftError(f"could not write {what} in {run_dir} "
                        f"({exc.strerror or exc}); {kept}") from None


class StopRequests:
    """Ctrl-C and SIGTERM while training: :attr:`reason` names the first signal (the loop
    stops after its step and saves); a second one quits at once.

    Under weft's entry point the signals are already requests (weft/interrupts.py, which
    ends the process on the second one); :meth:`listening` then only says what the signals print.
    Used as a library, it sets handlers of its own while it listens, and a second signal raises
    KeyboardInterrupt (a notebook's interrupt, say).
    """

    def __init__(self, announce: bool) -> None:
        self._reason = ""  # the signal that asked to stop, or why another rank stopped
        self.announce = announce  # say so on stderr (rank 0 only)

    @property
    def reason(self) -> str:
        return self._reason or interrupts.requested()

    @reason.setter
    def reason(self, value: str) -> None:
        self._reason = value

    @contextmanager
    def listening(self, second_line: Callable[[], str] = lambda: "interrupted") -> Iterator[None]:
        """Stop requests are taken within; ``second_line``: what a second signal prints."""
        if interrupts.listening():
            announce = self.announce and log.isEnabledFor(logging.WARNING)
            interrupts.set_announcement((lambda: _STOPPING) if announce else None)
            interrupts.set_second_signal_line(second_line)
            try:
                yield
            finally:
                interrupts.set_announcement(None)
            return
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def handler(signum: int, frame: Any) -> None:
            if self._reason:
                raise KeyboardInterrupt
            self._reason = signal.Signals(signum).name
            if self.announce:
                log.warning("%s: %s", self._reason, _STOPPING)
                # (Under torchrun a rank that failed gets the others SIGTERMed: they then
                # find it gone and say so, keeping the last saved state.)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


_STOPPING = ("stopping after this step and saving the state (press Ctrl-C again to quit at "
             "once, without saving)")
