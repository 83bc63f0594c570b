"""``weft train --nproc-per-node N``: torchrun's launcher, run in this process, with weft's Ctrl-C.

PyTorch's launcher (``torchrun``, :mod:`torch.distributed.run`) answers SIGINT and SIGTERM by
raising its ``SignalException`` in the launching process: it forwards the signal to its ranks
(they run in sessions of their own, so a terminal's Ctrl-C reaches only the launcher), waits for
them to stop, then lets the exception end it with a traceback and exit status 1. The ranks stop
as weft's should (rank 0 saves and prints how to continue); only the launcher's ending is
noise. :func:`launch` calls torchrun's own ``main`` (nothing of it is copied) and turns that
ending into weft's: one "interrupted" line and exit 130 (SIGINT) or 143 (SIGTERM). A second
Ctrl-C is torchrun's to handle: it raises again while the first one waits for the ranks, and
torchrun then sends them SIGTERM, their second signal, on which weft quits at once.

Before torchrun installs its handlers (when it starts the ranks) nothing has been started, so a
signal ends the launcher at once from weft's handler ("interrupted while starting the ranks").
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from weft import interrupts
from weft.errors import WeftError

ARGV = "weft.argv"  # where the group's context keeps its command line (click.Context.meta)


def is_launcher(nproc_per_node: int) -> bool:
    """Whether ``--nproc-per-node N`` asks this process to start the ranks: not when it is one
    of them (torchrun's ``LOCAL_WORLD_SIZE`` is N), which trains as the others do."""
    if nproc_per_node == 1:
        return False
    local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    if not local:
        return True
    if local != str(nproc_per_node):
        raise WeftError(f"--nproc-per-node {nproc_per_node} starts its own ranks, but this is "
                        f"one of {local} ranks that torchrun started: leave it out under "
                        "torchrun")
    return False


def torchrun_arguments(nproc_per_node: int, weft_args: Sequence[str]) -> list[str]:
    """torchrun's command line (without ``torchrun``) for ``weft WEFT_ARGS`` on this machine."""
    return ["--standalone", "--nproc-per-node", str(nproc_per_node), "-m", "weft",
            *weft_args]


def exit_code(signal_name: str) -> int:
    """The status a signal's stop ends with: 130 for SIGINT, 143 for SIGTERM (as a shell
    reports a process the signal ended), 128 + the number for the others torchrun forwards."""
    if signal_name in interrupts.EXIT_CODES:
        return interrupts.EXIT_CODES[signal_name]
    return 128 + int(signal.Signals[signal_name])


def failed_rank_code(exitcode: int) -> int:
    """A failed rank's status as the launcher's own: a rank that a signal ended (negative in
    torchrun's report) becomes 128 + the signal's number, as a shell shows it."""
    return 128 - exitcode if exitcode < 0 else exitcode


def launch(nproc_per_node: int, weft_args: Sequence[str]) -> NoReturn:
    """Run ``weft WEFT_ARGS`` as ``nproc_per_node`` ranks under torchrun's launcher and end
    this process with the status :func:`run_ranks` gives."""
    interrupts.check("starting the ranks")  # a request recorded while the command was parsed
    interrupts.listen(quit_while="starting the ranks")  # until torchrun installs its handlers
    status = run_ranks(nproc_per_node, weft_args)
    sys.stdout.flush()
    sys.stderr.flush()
    # At once: torchrun's handlers stay installed, and a Ctrl-C during the interpreter's
    # teardown would raise its exception again, with a traceback.
    os._exit(status)


def run_ranks(nproc_per_node: int, weft_args: Sequence[str]) -> int:
    """torchrun's own ``main`` for the ranks; the status to exit with: 0, a failed rank's, or
    130 / 143 when a signal stopped them (one line says so instead of torchrun's traceback)."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(torchrun_arguments(nproc_per_node, weft_args))
    except SignalException as exc:
        name = signal.Signals(exc.sigval).name
        print(f"weft: interrupted by {name}: the {nproc_per_node} ranks have stopped",
              file=sys.stderr)
        return exit_code(name)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        print(f"weft: rank {rank} failed with exit status {failure.exitcode}", file=sys.stderr)
        return failed_rank_code(failure.exitcode)
    return 0
