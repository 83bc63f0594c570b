"""Ctrl-C and SIGTERM in weft's commands: a signal only records a request to stop.

This module owns that request for the whole process. weft's entry point (:func:`weft.cli.main`:
the ``weft`` command, ``python -m weft`` and every ``torchrun`` rank) calls :func:`listen`
before it imports anything heavy. While it loads its modules (nothing done yet, nothing to
lose) a signal ends the process at once from the handler. From then on a signal never raises
inside library code: a KeyboardInterrupt raised in the middle of PyTorch's imports, C
extensions or threads was sometimes swallowed there (the run went on) or left a module
half-imported. Instead, start-up calls :func:`check` between its phases (corpus, model) and
the training loop reads :func:`requested` before every step (training/faults.py). A second
signal quits at once: it writes :func:`set_second_signal_line`'s line and ends the process with
130, as the KeyboardInterrupt it raised before did (a stop at a boundary exits 130 for SIGINT,
143 for SIGTERM, as a shell reports a process that the signal ended).

Commands that do not train get Python's own handlers back once weft is loaded
(:func:`stop_listening`): Ctrl-C then interrupts a generation as it always did. Used as a
library (``weft.train`` in a notebook), nothing here is installed and the trainer listens for
itself while it trains.

No PyTorch here: this module must load in milliseconds, before everything else.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT.name: 130, signal.SIGTERM.name: 143}  # 128 + the signal's number

_reason = ""  # the first signal's name, e.g. "SIGINT"; "" while none came
_listening = False
_previous: dict[signal.Signals, Any] = {}  # the handlers before listen(), for stop_listening()
_quit_while: str | None = None  # the phase in which a first signal ends the process at once
_announce: Callable[[], str] | None = None  # what the first signal says on stderr, if anything
_second_line: Callable[[], str] = lambda: "interrupted"  # noqa: E731 - replaced by callers


class Interrupted(BaseException):
    """A stop requested by a signal, raised by :func:`check` at a phase boundary of start-up.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it.
    """

    def __init__(self, reason: str, phase: str) -> None:
        super().__init__(f"interrupted by {reason} while {phase}")
        self.reason = reason
        self.phase = phase

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.reason, 130)


def _record(signum: int, frame: FrameType | None) -> None:
    """The handler: the first signal is recorded (and announced); a second one ends weft, and
    so does the first while nothing has been done yet (:func:`listen`'s ``quit_while``)."""
    global _reason
    name = signal.Signals(signum).name
    if _quit_while is not None:
        os.write(2, f"weft: interrupted by {name} while {_quit_while}; nothing was done\n"
                 .encode(errors="replace"))
        os._exit(EXIT_CODES.get(name, 130))
    if _reason:
        os.write(2, (_second_line() + "\n").encode(errors="replace"))
        os._exit(130)  # as a KeyboardInterrupt did, whichever signal came second
    _reason = name
    if _announce is not None:
        os.write(2, f"warning: {name}: {_announce()}\n".encode(errors="replace"))


def listen(quit_while: str | None = None) -> None:
    """Record SIGINT and SIGTERM from now on (the entry point, before its imports).

    With ``quit_while`` (what is going on, e.g. "loading weft"), a signal ends the process at
    once instead, saying so, until :func:`quit_no_more`: for a phase in which nothing has been
    done, so nothing is lost, and which can take seconds on a busy machine (importing PyTorch)
    with no boundary in it to check a request at. The process ends from the handler itself,
    so nothing is raised inside the imports either.
    """
    global _listening, _quit_while
    _quit_while = quit_while
    for sig in SIGNALS:
        previous = signal.signal(sig, _record)
        if not _listening:
            _previous[sig] = previous
    _listening = True


def quit_no_more() -> None:
    """From now on the first signal is only recorded (work that a stop must not cut begins)."""
    global _quit_while
    _quit_while = None


def stop_listening() -> None:
    """Give Ctrl-C and SIGTERM back to the handlers they had before :func:`listen` (Python's
    own, or "ignored" for a job its shell started in the background)."""
    global _listening
    for sig in SIGNALS:
        previous = _previous.pop(sig, None)  # None also when it was not set from Python
        if previous is None:
            previous = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        signal.signal(sig, previous)
    _listening = False


def listening() -> bool:
    """Whether the entry point's handlers are in charge of this process's signals."""
    return _listening


def requested() -> str:
    """The signal that asked weft to stop ("SIGINT", "SIGTERM"), or "" if none did."""
    return _reason


def request(reason: str) -> None:
    """Record a stop request as the first signal would (what the handler does, callable from
    code: tests inject a request at a phase boundary with it)."""
    global _reason
    _reason = _reason or reason


def check(phase: str) -> None:
    """Raise :class:`Interrupted` if a stop was requested; ``phase`` says what was going on
    ("loading weft", "reading the corpus")."""
    if _reason:
        raise Interrupted(_reason, phase)


def set_announcement(text: Callable[[], str] | None) -> None:
    """What the first signal prints (after ``warning: SIGNAME:``); None: nothing."""
    global _announce
    _announce = text


def set_second_signal_line(line: Callable[[], str]) -> None:
    """The line a second signal prints before it ends the process (e.g. the resume command)."""
    global _second_line
    _second_line = line


def reset() -> None:
    """Forget any request and announcement (a process that starts a new command, or tests)."""
    global _reason, _announce, _second_line, _quit_while
    _reason = ""
    _quit_while = None
    _announce = None
    _second_line = lambda: "interrupted"  # noqa: E731
