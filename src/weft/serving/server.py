"""What every route shares (:class:`Server`) and how a route reaches it, the key check, and the
checks both generation APIs make: a run of the right kind, and settings within the limits."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from weft.config import GenerationConfig
from weft.errors import WeftError
from weft.runs import TAGGER, run_kind
from weft.serving.jobs import Generations
from weft.serving.limits import Limits
from weft.serving.metrics import ServerMetrics
from weft.serving.registry import RunRegistry

log = logging.getLogger("weft.serve")

MIN_TEMPERATURE = 1e-3  # below it, logits / temperature overflows float32 (0 stays greedy)


@dataclass
class Server:
    registry: RunRegistry
    limits: Limits
    generations: Generations
    metrics: ServerMetrics
    api_key: str | None = None


# The dependencies are coroutines although they never wait: FastAPI runs a plain function
# dependency in a worker thread, a hand-off per request that cost the event loop a quarter of
# its time under load (docs/benchmarks.md, "Serving").
async def get_server(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


ServerDep = Annotated[Server, Depends(get_server)]  # a route's parameter for it


class Unauthorized(Exception):
    """No ``Authorization: Bearer KEY`` with the server's key (answered with 401)."""


async def require_key(request: Request) -> None:
    """A route dependency: with ``--api-key``, the request must carry the key."""
    key = (await get_server(request)).api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest takes as long whatever the bytes are, so timing reveals nothing of the key.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             key.encode()):
        raise Unauthorized


class OverLimit(WeftError):
    """A value over a server limit; ``param`` names the request field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


async def load_run(server: Server, name: str, kind: str) -> Any:
    """The loaded model of run ``name``, which must be of ``kind``."""
    cached = server.registry.loaded(name)
    actual = cached[1] if cached is not None else run_kind(server.registry.config(name))
    if actual != kind:
        use = "POST /api/tag" if actual == TAGGER else "POST /api/generate or /v1/completions"
        raise WeftError(f"run {name!r} is a {actual}, not a {kind}: use {use}")
    if cached is not None:
        return cached[0]
    try:
        model = await run_in_threadpool(server.registry.get, name)
    except (WeftError, OSError) as exc:  # the run's files, which its owner can fix: one line
        error = exc if isinstance(exc, WeftError) else WeftError(
            f"run {name!r} could not be loaded: {_file_error(exc)}")
        log.warning("%s", error)
        raise error from None
    except Exception as exc:  # a damaged run is the run's problem, reported as such
        log.exception("loading %s failed", name)
        raise WeftError(f"run {name!r} could not be loaded: {exc}") from None
    server.generations.sweep()  # closes the idle batch of a model this load replaced
    return model


def _file_error(exc: OSError) -> str:
    """What went wrong with which file, naming the file but not where the server keeps it."""
    if exc.filename is None or exc.strerror is None:
        return str(exc)
    return f"{Path(exc.filename).name}: {exc.strerror}"


def check_limits(limits: Limits, *, prompts: list[str], max_new_tokens: int | None,
                 temperature: float | None, sequences: int, stop: list[str] | None,
                 names: dict[str, str] | None = None) -> None:
    """Raise :class:`OverLimit` for a request over the server's limits; ``names`` maps weft's
    field names to the request's (``max_new_tokens`` -> ``max_tokens``)."""
    def name(field: str) -> str:
        return (names or {}).get(field, field)

    for prompt in prompts:
        if len(prompt) > limits.max_prompt_chars:
            raise OverLimit(f"{name('prompt')} is {len(prompt)} characters; this server takes "
                            f"at most {limits.max_prompt_chars}", name("prompt"))
    if max_new_tokens is not None and max_new_tokens > limits.max_new_tokens:
        raise OverLimit(f"{name('max_new_tokens')} is at most {limits.max_new_tokens} here",
                        name("max_new_tokens"))
    if temperature is not None and 0 < temperature < MIN_TEMPERATURE:
        raise OverLimit(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}",
                        "temperature")
    if sequences > limits.max_sequences:
        raise OverLimit(f"{name('num_return_sequences')} is at most {limits.max_sequences} "
                        "here", name("num_return_sequences"))
    if stop and (len(stop) > limits.max_stop_strings or any(not s or len(s) > 100 for s in stop)):
        raise OverLimit(f"stop takes at most {limits.max_stop_strings} non-empty strings of up "
                        "to 100 characters", "stop")


def generation_config(model: Any, limits: Limits, options: dict[str, Any]) -> GenerationConfig:
    """The run's defaults with ``options`` over them, the length capped at the server's limit
    (a run's default may be longer)."""
    config: GenerationConfig = model.generation_config(**options)
    if config.max_new_tokens > limits.max_new_tokens:
        config = model.generation_config(**{**options, "max_new_tokens": limits.max_new_tokens})
    return config
