"""`weft chat RUN`: write a story in turns with a model, in the terminal.

Each line typed is added to the story and the model continues it, streaming; the model's state
is kept between turns (weft.generation.chat). Lines starting with `/` are commands. Ctrl-C
while the model writes stops that reply and keeps the session; at the prompt it clears the
line; Ctrl-D or `/quit` leaves.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from weft.errors import WeftError

HELP = """commands:
  /set NAME VALUE   change a setting: temperature, top_k, top_p, repetition_penalty,
                    max_new_tokens, seed, max_copy (a number, or off)
  /settings         show the settings
  /undo             take back the last turn (your text and the reply)
  /copy             the copy meter: longest spans copied verbatim from the training corpus
  /save FILE        write the story so far to FILE
  /reset            start the story again
  /help             this list
  /quit             leave (so does Ctrl-D)
a line that is not a command is added to the story, then the model continues it (an empty
line lets the model go on); Ctrl-C stops a reply."""


@contextmanager
def _ctrl_c_stops(flag: threading.Event) -> Iterator[None]:
    """While the model writes, Ctrl-C sets ``flag`` instead of raising KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGINT, lambda *_: flag.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--max-new-tokens", type=int, default=200, show_default=True,
              help="Longest reply, in tokens.")
@click.option("--temperature", type=float, help="0 means greedy [default: from the run, 0.8]")
@click.option("--top-k", type=int, help="Sample from the k likeliest tokens; 0 disables.")
@click.option("--top-p", type=float, help="Nucleus sampling mass; 1 disables.")
@click.option("--repetition-penalty", type=float, help="> 1 discourages repeats; 1 disables.")
@click.option("--stop", multiple=True,
              help="End a reply at this string (repeatable); the string is not shown.")
@click.option("--label", "labels", multiple=True, metavar="COLUMN=VALUE",
              help="Write under this label value (repeatable; runs with label columns).")
@click.option("--seed", type=int, help="Makes the session repeatable.")
@click.option("--max-copy", type=click.IntRange(min=1), metavar="N",
              help="No reply copies N characters verbatim from the training corpus: a "
                   "token that would is drawn again (the reply ends only if every draw would).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
def chat(run: Path, labels: tuple[str, ...], device: str, max_copy: int | None,
         **options: Any) -> None:
    """Write a story in turns with the model in RUN: each line you type is added, then the
    model continues it (type /help for commands)."""
    from weft.api import load_language_model
    from weft.data.labels import parse_label_options
    from weft.generation.chat import ChatSession

    model = load_language_model(run, device=device)
    session = ChatSession(model, model.generation_config(**options),
                          parse_label_options(labels), max_copy)
    tags = "".join(f" {k}={v}" for k, v in session.labels.items())
    click.echo(f"weft chat: {run}{tags}; /help lists the commands, Ctrl-D leaves")
    while True:
        click.echo("> ", nl=False)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            click.echo()
            continue
        if not line:  # end of input (Ctrl-D)
            click.echo()
            return
        line = line.rstrip("\n")
        if line.startswith("/"):
            try:
                if not _command(session, line):
                    return
            except WeftError as exc:
                click.echo(f"error: {exc}")
            continue
        stop = threading.Event()
        with _ctrl_c_stops(stop):
            turn = session.turn(line, on_text=lambda text: click.echo(text, nl=False),
                                should_stop=stop.is_set)
        click.echo(" [stopped]" if turn.stopped
                   else " [ended before a copy from the corpus]" if turn.cut else "")
        sys.stdout.flush()


def _command(session: Any, line: str) -> bool:
    """Run one `/command`; False means leave."""
    name, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    if name in ("quit", "exit", "q"):
        return False
    if name == "help":
        click.echo(HELP)
    elif name == "set":
        setting, _, value = rest.partition(" ")
        session.change(setting, value.strip())
        click.echo(f"{setting} = " + str(session.max_copy if setting == "max_copy"
                                         else getattr(session.settings, setting)))
    elif name == "settings":
        for setting in ("temperature", "top_k", "top_p", "repetition_penalty",
                        "max_new_tokens", "seed", "stop"):
            click.echo(f"{setting} = {getattr(session.settings, setting)!r}")
        click.echo(f"max_copy = {session.max_copy!r}")
    elif name == "undo":
        undone = session.undo()
        click.echo("nothing to undo" if undone is None
                   else f"undone: {(undone.user + undone.reply)[-60:]!r}")
    elif name == "copy":
        meter = session.copy_meter()
        if meter is None:
            click.echo("the copy meter is unavailable: this run has no copy index")
        else:
            for what, copy in zip(("last reply", "whole story"), meter, strict=True):
                click.echo(f"{what}: longest copy {copy.chars} characters"
                           + (f" at corpus character {copy.offset}: {copy.text!r}"
                              if copy.chars else ""))
    elif name == "save":
        if not rest:
            raise WeftError("/save takes a file name")
        try:
            Path(rest).write_text(session.transcript(), encoding="utf-8")
        except OSError as exc:
            raise WeftError(f"cannot write {rest} ({exc.strerror})") from None
        click.echo(f"saved {len(session.transcript()):,} characters to {rest}")
    elif name == "reset":
        session.reset()
        click.echo("the story starts again")
    else:
        raise WeftError(f"unknown command /{name}; /help lists them")
    return True
