"""What every training run checks and holds, language model or tagger, before it trains.

A new run needs an output directory that is empty (or absent) and writable; a resumed one needs
a run directory it can write. One process at a time trains in a directory (an advisory lock).
The disk must hold the states the run will save. (What a resume may change, and the check that
it sees the same data, are the run directory's contract: runs.py.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from weft.errors import WeftError
from weft.runs import CONFIG, LOCK


def check_output_dir(out: Path, resume: bool, resume_command: str = "weft train --resume"
                     ) -> None:
    """Fail before any training if the run directory cannot be created or written."""
    if resume:
        if not out.is_dir():
            raise WeftError(f"{out} is not a run directory")
        _probe_writable(out, "the run directory")
        return
    # The lock file of an earlier attempt that failed (e.g. a missing corpus) does not count.
    if out.exists() and any(p.name != LOCK for p in out.iterdir()):
        if (out / CONFIG).exists():
            raise WeftError(f"{out} already holds a run; resume it with `{resume_command} "
                            f"{out}`, or choose another --out")
        raise WeftError(f"{out} exists and is not empty; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeftError(f"cannot create {out} ({exc.strerror}); choose another --out") from None
    _probe_writable(out, "another --out")


def _probe_writable(out: Path, remedy: str) -> None:
    probe = out / ".write-test"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise WeftError(f"cannot write to {out} ({exc.strerror}); fix its permissions or use "
                        f"{remedy}") from None


@contextmanager
def exclusive(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory for one training process: a second one would clobber its files.

    An advisory ``flock``: the system releases it when the process ends, even by ``kill -9``,
    so it never goes stale. (Where ``fcntl`` does not exist, e.g. Windows, nothing is locked.)
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    handle = open(Path(run_dir) / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - held below
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip()
            raise WeftError(f"another weft process{f' (pid {pid})' if pid else ''} is training "
                            f"in {run_dir}; wait for it to finish or stop it first") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # also releases the lock


def check_free_space(run_dir: str | Path, model: torch.nn.Module, resume: bool) -> None:
    """Refuse to start when the disk cannot hold the files the run will save.

    A state is the weights plus AdamW's two moments: 3 x 4 bytes per parameter. At the peak of
    a save the directory holds the previous state, the new one being written and the best
    weights (7 x 4 bytes per parameter); a resumed run already has two of those on disk, and
    each save replaces the oldest, so it needs room for one more state. Plus a margin.
    """
    params = sum(p.numel() for p in model.parameters())
    needed = (12 if resume else 28) * params + (16 << 20)
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise WeftError(f"{run_dir} has {free / 2**20:,.0f} MB free but this run needs about "
                        f"{needed / 2**20:,.0f} MB for its saved states and weights; free some "
                        "space or choose another --out")
