"""The ``weft`` command line (click).

:func:`main` is the entry point. It loads the commands, and PyTorch with them, inside its own
frame, so that Ctrl-C in the seconds that takes ends with "interrupted" (exit 130), as it does
once a command runs, instead of a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from weft.cli.main import cli
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    cli()
