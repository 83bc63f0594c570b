"""``weft serve``: the HTTP API and web playground for folders of runs, runs and built-in
models, served together."""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

import click

from weft.device import set_threads
from weft.errors import WeftError
from weft.serving.limits import Limits

_L = Limits()
MAX_PORT = 65535


@click.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the server to your network.")
@click.option("--port", type=int, default=8000, show_default=True,
              help="Port to listen on, 0 to 65535; 0 takes any free port (the first line "
                   "printed says which).")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--threads", type=int,
              help="CPU threads for PyTorch [default: PyTorch's choice, the cores].")
@click.option("--api-key", envvar="WEFT_API_KEY", show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every API request (/api, /v1, "
                   "/metrics); the page asks for it once.")
@click.option("--compile/--no-compile", "compile_steps", default=False, show_default=True,
              help="CPU: compile the batched step (torch.compile); the first steps of a model "
                   "compile for tens of seconds.")
@click.option("--batch-in", type=click.Choice(["process", "thread"]), default="process",
              show_default=True,
              help="Where each model's shared batch steps: a process of its own (it never "
                   "waits for the HTTP side's interpreter lock) or a thread of the server "
                   "(less CPU per token: for a machine whose cores are all busy).")
@click.option("--max-new-tokens", type=int, default=_L.max_new_tokens, show_default=True,
              help="Longest generation a request may ask for.")
@click.option("--max-prompt-chars", type=int, default=_L.max_prompt_chars, show_default=True,
              help="Longest prompt (or text to tag), in characters.")
@click.option("--max-sequences", type=int,
              help=f"Most num_return_sequences per request, at most --max-rows "
                   f"[default: {_L.max_sequences}, or --max-rows if fewer].")
@click.option("--max-body-bytes", type=int, default=_L.max_body_bytes, show_default=True,
              help="Largest request body; larger ones get 413.")
@click.option("--max-rows", type=int, default=_L.max_rows, show_default=True,
              help="Rows in the shared batch (a sequence is a row, a tagging too); others "
                   "wait to join.")
@click.option("--max-waiting", type=int, default=_L.max_waiting, show_default=True,
              help="Rows of requests that may wait to join; more get 503 at once.")
@click.option("--queue-timeout", type=float, default=_L.queue_timeout, show_default=True,
              help="Seconds a request waits to join before 503.")
@click.option("--max-loaded", type=int, default=_L.max_loaded, show_default=True,
              help="Models kept in memory; the least recently used is dropped.")
def serve(runs: tuple[str, ...], host: str, port: int, device: str, threads: int | None,
          api_key: str | None, compile_steps: bool, batch_in: str,
          **limit_values: Any) -> None:
    """Serve the runs under each of RUNS (a folder of runs, a run directory, or builtin:english;
    several together) over HTTP: a playground page at /, weft's JSON API under /api and an
    OpenAI-compatible one under /v1 (see docs/serving.md)."""
    from weft.builtin import resolve_run

    if not 0 <= port <= MAX_PORT:
        raise WeftError(f"--port must be from 0 to {MAX_PORT} (0: any free port), not {port}")
    for root in runs:
        if not resolve_run(root).is_dir():
            raise WeftError(f"{root} is not a folder: give a run directory or a folder of runs")
    try:
        import uvicorn

        from weft.generation.compiled import compiled_step
        from weft.serving.app import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        raise WeftError(f"weft serve needs the serve extra ({exc.name} is missing): "
                        "pip install 'weft[serve]'") from None
    limits = _limits(limit_values)
    # One thread steps each model's batch (in the batch's own process, which takes the count
    # from here); it alone sets how many threads PyTorch uses, and nothing changes that while
    # serving.
    if threads is not None:
        set_threads(threads)
    if compile_steps and device != "cpu":
        raise WeftError("--compile is for serving on a CPU; on a GPU leave it off")
    loopback = host in LOOPBACK_HOSTS
    # Bound to loopback, only loopback Host headers are accepted: a web page elsewhere cannot
    # reach the server through DNS rebinding.
    # The registry names a built-in model as given (builtin:english), a run by its folder.
    app = create_app(list(runs), limits=limits, device=device, api_key=api_key,
                     compile_step=compiled_step if compile_steps else None,
                     batch_process=batch_in == "process",
                     allowed_hosts=[h.strip("[]") for h in LOOPBACK_HOSTS] if loopback else None)
    listening = _listen(host, port)
    count = len(app.state.registry.runs())
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    click.echo(f"serving {count} run{'s' if count != 1 else ''} from {', '.join(runs)} at "
               f"http://{shown}:{listening.getsockname()[1]}/  (Ctrl-C stops)")
    if not loopback and not api_key:
        click.echo("warning: listening beyond this machine without --api-key: anyone who can "
                   "reach it can use it", err=True)
    _run(uvicorn, app, listening)


def _limits(values: dict[str, Any]) -> Limits:
    """The limits from the flags; --max-sequences left out is 4, or --max-rows if fewer."""
    if any(v is not None and v <= 0 for v in values.values()):
        raise WeftError("the --max-* limits and --queue-timeout must be > 0")
    sequences, rows = values["max_sequences"], values["max_rows"]
    if sequences is None:
        values = {**values, "max_sequences": min(_L.max_sequences, rows)}
    elif sequences > rows:
        raise WeftError(f"--max-sequences {sequences} cannot be more than --max-rows {rows}: a "
                        "request's sequences must fit in the batch together")
    return Limits(**values)


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host`` and ``port``. Bound here, before the banner, so that a port in
    use is one line of error (uvicorn would say it after the banner, and exit with 3)."""
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    # As uvicorn does: a port that a server just stopped left in TIME_WAIT can be bound again
    # (a port another server listens on still cannot).
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host.strip("[]"), port))
    except OSError as exc:
        listening.close()
        if exc.errno == errno.EADDRINUSE:
            raise WeftError(f"port {port} is in use on {host}: stop what listens there, or "
                            "choose another with --port") from None
        raise WeftError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return listening


def _run(uvicorn: Any, app: Any, listening: socket.socket) -> None:
    """Serve ``app`` on the bound socket until Ctrl-C, as ``uvicorn.run`` would on its own."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=3))
    try:
        server.run(sockets=[listening])
    except KeyboardInterrupt:  # uvicorn has shut down gracefully, then raised it again
        pass
    finally:
        listening.close()
    if not server.started:
        sys.exit(3)  # uvicorn's status for a server that could not start (it logged why)
