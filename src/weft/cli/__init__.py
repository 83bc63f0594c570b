"""The ``weft`` command line (click).

:func:`main` is the entry point. It loads the commands, and PyTorch with them, under a Ctrl-C
handler of its own: a KeyboardInterrupt raised in the middle of PyTorch's or NumPy's
initialization can leave them half-imported (an AttributeError later), abort in C++, or make
the interpreter end itself by SIGINT. Nothing has been written at that point, so Ctrl-C then
ends at once with "interrupted" (exit 130), as it does once a command runs.
"""

from __future__ import annotations

import os
import signal
from types import FrameType


def _interrupted_while_loading(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"interrupted\n")
    os._exit(130)


def main() -> None:
    previous = signal.signal(signal.SIGINT, _interrupted_while_loading)
    try:
        from weft.cli.main import cli
    finally:
        signal.signal(signal.SIGINT, previous)
    cli()
