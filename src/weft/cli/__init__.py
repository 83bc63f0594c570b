"""The ``weft`` command line (click).

:func:`main` is the entry point (also of ``python -m weft`` and of each ``torchrun`` rank). Its
first act is :func:`weft.interrupts.listen`, so that no KeyboardInterrupt can land inside
PyTorch's or NumPy's initialization (it could be swallowed, leave them half-imported, or abort in
C++). While the commands load, nothing has been done and a signal ends weft at once from the
handler ("interrupted", exit 130 / 143). From then on a training command's signals only record a
request: its start-up checks it between phases, its loop finishes the step and saves. Other
commands get Python's own Ctrl-C back. A second signal quits at once (exit 130).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from weft import interrupts


def trains(args: Sequence[str]) -> bool:
    """Whether the command line runs a training command (``train``, ``tag train``): those keep
    signals as requests until their loop honours them."""
    return list(args[:1]) == ["train"] or list(args[:2]) == ["tag", "train"]


def _under_torchrun() -> bool:
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")


def main() -> None:
    training = trains(sys.argv[1:])
    # Under torchrun a rank stops only where all ranks agree (once the process group is
    # joined: training/fit_language_model.py), so that none waits for a rank that has gone:
    # its ranks only record, even while loading.
    agreed = training and _under_torchrun()
    interrupts.listen(quit_while=None if agreed else "loading weft")
    from weft.cli.main import cli  # PyTorch with it: seconds on a busy machine

    interrupts.quit_no_more()
    if not training:
        interrupts.stop_listening()
    if not agreed:
        try:
            interrupts.check("loading weft")
        except interrupts.Interrupted as exc:
            os.write(2, f"weft: {exc}; nothing was done\n".encode())
            sys.exit(exc.exit_code)
    cli()
