"""``weft serve``: the HTTP API and web playground for a folder of runs (or one run)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from weft.errors import WeftError
from weft.serving.limits import Limits

_L = Limits()


@click.command()
@click.argument("runs", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the server to your network.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--threads", type=int,
              help="CPU threads for PyTorch [default: cores / --max-concurrent, at least 1].")
@click.option("--max-new-tokens", type=int, default=_L.max_new_tokens, show_default=True,
              help="Longest generation a request may ask for.")
@click.option("--max-prompt-chars", type=int, default=_L.max_prompt_chars, show_default=True,
              help="Longest prompt (or text to tag), in characters.")
@click.option("--max-sequences", type=int, default=_L.max_sequences, show_default=True,
              help="Most num_return_sequences per request.")
@click.option("--max-body-bytes", type=int, default=_L.max_body_bytes, show_default=True,
              help="Largest request body; larger ones get 413.")
@click.option("--max-concurrent", type=int, default=_L.max_concurrent, show_default=True,
              help="Generations running at once; others wait for a slot.")
@click.option("--max-waiting", type=int, default=_L.max_waiting, show_default=True,
              help="Requests that may wait for a slot; more get 503 at once.")
@click.option("--queue-timeout", type=float, default=_L.queue_timeout, show_default=True,
              help="Seconds a request waits for a slot before 503.")
@click.option("--max-loaded", type=int, default=_L.max_loaded, show_default=True,
              help="Models kept in memory; the least recently used is dropped.")
def serve(runs: Path, host: str, port: int, device: str, threads: int | None,
          **limit_values: float) -> None:
    """Serve the runs under RUNS (or the run RUNS) over HTTP: a playground page at / and a
    JSON API under /v1 (see docs/serving.md)."""
    try:
        import torch
        import uvicorn

        from weft.serving.app import LOOPBACK_HOSTS, create_app
    except ImportError as exc:
        raise WeftError(f"weft serve needs the serve extra ({exc.name} is missing): "
                        "pip install 'weft[serve]'") from None
    if any(v <= 0 for v in limit_values.values()):
        raise WeftError("the --max-* limits and --queue-timeout must be > 0")
    limits = Limits(**limit_values)  # type: ignore[arg-type]  # click gives int and float
    # Generating one token of a small recurrent model is too little work to split: threads
    # shared by concurrent generations only contend (measured 8x slower on 2 busy cores), so
    # each generation gets its share of the cores.
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // limits.max_concurrent))
    loopback = host in LOOPBACK_HOSTS
    # Bound to loopback, only loopback Host headers are accepted: a web page elsewhere cannot
    # reach the server through DNS rebinding.
    app = create_app(runs, limits=limits, device=device,
                     allowed_hosts=[h.strip("[]") for h in LOOPBACK_HOSTS] if loopback else None)
    count = len(app.state.registry.runs())
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {count} run{'s' if count != 1 else ''} from {runs} at "
               f"http://{shown}:{port}/  (Ctrl-C stops)")
    if not loopback:
        click.echo("warning: listening beyond this machine; weft serve has no authentication",
                   err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
