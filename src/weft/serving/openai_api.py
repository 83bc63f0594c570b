"""OpenAI-compatible endpoints: ``GET /v1/models`` and ``POST /v1/completions``.

They follow the OpenAI API, so its clients (the official ``openai`` package, LangChain,
LiteLLM, editors) can use a weft run by its name. ``top_k``, ``repetition_penalty``,
``labels``, ``copy_meter`` and ``max_copy`` are weft's extras (a finished choice then carries
its ``labels``, ``longest_copy``, ``tries`` and ``cut``, streamed or not). A parameter weft
cannot honour (``logprobs``, ``echo``, ``best_of``, ``suffix``, penalties, ``logit_bias``, or
any unknown field) gets a 400 in OpenAI's error shape naming it; one sent at its neutral value
(``echo: false``, ``best_of: 1``, ...) is accepted, since it asks for nothing weft does not do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from weft.errors import WeftError
from weft.generation import Completion
from weft.generation.samples import Sample, label_plan
from weft.runs import CONFIG, LANGUAGE_MODEL, run_kind
from weft.serving.copies import CopyCheck, generate_again
from weft.serving.errors import error_body
from weft.serving.jobs import Job, StreamThenCancel, pieces
from weft.serving.server import (
    Server,
    ServerDep,
    check_limits,
    generation_config,
    load_run,
    require_key,
)

log = logging.getLogger("weft.serve")

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["openai"])

# OpenAI parameters weft cannot honour, and the values that ask for nothing (accepted).
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "echo": (None, False), "logprobs": (None, None), "best_of": (None, 1), "suffix": (None, ""),
    "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
}


class OpenAIError(WeftError):
    """Answered in OpenAI's error shape: ``{"error": {message, type, param, code}}``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    # Unknown fields are kept, to be refused by name (never silently ignored).
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="Run name, as listed by GET /v1/models.")
    prompt: str | list[str] = Field("", description="Text to continue, or a list of texts.")
    max_tokens: int | None = Field(None, ge=0, description="[default: 16]")
    temperature: float | None = Field(None, ge=0, le=1e3, allow_inf_nan=False,
                                      description="0 means greedy [default: 1].")
    top_p: float | None = Field(None, ge=1e-6, le=1, allow_inf_nan=False)
    n: int | None = Field(None, ge=1, description="Completions per prompt [default: 1].")
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="Accepted; it changes nothing.")
    top_k: int | None = Field(None, ge=0, description="weft: sample from the k likeliest.")
    repetition_penalty: float | None = Field(None, ge=1e-3, le=1e3, allow_inf_nan=False,
                                             description="weft: > 1 discourages repeats.")
    labels: dict[str, str] | None = Field(
        None, description="weft: label values to generate under (runs trained with "
                          "--label-column); each choice then carries its labels.")
    copy_meter: bool = Field(False, description="weft: each choice carries its longest_copy "
                                                "from the training corpus.")
    max_copy: int | None = Field(
        None, ge=1, description="weft: no choice copies this many characters from the "
                                "training corpus (generated again up to 10 times, then cut; "
                                "streamed, tokens drawn again); each carries tries and cut.")


@router.get("/models")
def list_models(server: ServerDep) -> dict[str, Any]:
    """The language-model runs that can generate, as OpenAI models."""
    return {"object": "list", "data": [_model(name, path) for name, path
                                       in server.registry.runs().items()
                                       if _generates(server, name)]}


@router.get("/models/{name:path}")
def get_model(name: str, server: ServerDep) -> dict[str, Any]:
    """One of the models ``GET /v1/models`` lists; any other name is a 404."""
    path = server.registry.path(name)
    if not _generates(server, name):
        raise OpenAIError(f"{name!r} is not a language model that can generate (a tagger, or "
                          "not ready: GET /api/models says why); GET /v1/models lists those "
                          "that can", "model", 404, "model_not_found")
    return _model(name, path)


def _generates(server: Server, name: str) -> bool:
    """Whether run ``name`` is a language model that is ready (has every file it needs)."""
    try:
        kind = run_kind(server.registry.config(name))
        return kind == LANGUAGE_MODEL and server.registry.not_ready(name, kind) is None
    except WeftError:
        return False


def _model(name: str, path: Path) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int((path / CONFIG).stat().st_mtime),
            "owned_by": "weft"}


@router.post("/completions")
async def completions(req: CompletionRequest, request: Request, server: ServerDep) -> Any:
    """Continue the prompt (or each prompt of a list) ``n`` times."""
    for name, value in (req.model_extra or {}).items():
        if name not in NEUTRAL:
            raise OpenAIError(f"unsupported parameter: {name!r}", name)
        if value is not None and not any(value == v and type(value) is type(v)
                                         for v in NEUTRAL[name]):
            raise OpenAIError(f"unsupported parameter: weft cannot honour {name!r} "
                              f"(only {NEUTRAL[name][1]!r})", name)
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if not prompts:
        raise OpenAIError("prompt must not be an empty list", "prompt")
    n = req.n or 1
    stop = [req.stop] if isinstance(req.stop, str) else req.stop
    max_tokens = 16 if req.max_tokens is None else req.max_tokens
    check_limits(server.limits, prompts=prompts, max_new_tokens=max_tokens,
                 temperature=req.temperature, sequences=n * len(prompts), stop=stop,
                 names={"max_new_tokens": "max_tokens", "num_return_sequences": "n"})
    model = await load_run(server, req.model, LANGUAGE_MODEL)
    options = {"max_new_tokens": max_tokens, "num_return_sequences": n, "stop": stop,
               "seed": req.seed, "top_k": req.top_k, "repetition_penalty": req.repetition_penalty,
               "temperature": 1.0 if req.temperature is None else req.temperature,
               "top_p": 1.0 if req.top_p is None else req.top_p}
    config, labels, prefixes = label_plan(model.labels, model.tokenizer, req.labels,
                                          generation_config(model, server.limits, options))
    try:
        copies = CopyCheck(model, req.copy_meter, req.max_copy)
    except WeftError as exc:
        raise OpenAIError(str(exc), "max_copy") from None
    chunks: asyncio.Queue[tuple[int, str] | None] | None = asyncio.Queue() if req.stream \
        else None
    jobs: list[Job] = []
    try:
        for k, prompt in enumerate(prompts):
            jobs.append(await server.generations.start(
                model, model.prepare_prompt(prompt), config, streamed=bool(req.stream),
                chunks=chunks, first_index=k * n, prefixes=prefixes,
                guards=copies.guards(n) if req.stream else None))
    except BaseException:
        for job in jobs:
            job.cancel()
        raise
    head = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion",
            "created": int(time.time()), "model": req.model}
    extras = _Extras(labels if model.labels.columns else None, copies)
    if chunks is not None:
        usage = req.stream_options is not None and req.stream_options.include_usage
        return StreamThenCancel(_stream(head, model, jobs, chunks, usage, extras), jobs)
    samples: list[Sample] = []
    for job in jobs:
        texts = await server.generations.finish(job, request.is_disconnected)
        rows = [Sample(text, row) for text, row in zip(texts, labels, strict=True)]
        await copies.apply(rows, again=generate_again(server, model, job.request.prompt,
                                                      config, prefixes,
                                                      request.is_disconnected))
        samples += rows
    choices = [{**_choice(i, s.text, s.text.finish_reason), **extras(s)}
               for i, s in enumerate(samples)]
    return {**head, "choices": choices,
            "usage": _usage(model, jobs, [s.text for s in samples])}


def _choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


class _Extras:
    """weft's fields of a finished choice: its labels (runs with label columns; the same
    draws for every prompt, from one seed) and its copy meter, as asked for."""

    def __init__(self, labels: list[dict[str, str]] | None, copies: CopyCheck) -> None:
        self.labels, self.copies = labels, copies

    def __call__(self, sample: Sample) -> dict[str, Any]:
        return {**({"labels": sample.labels} if self.labels is not None else {}),
                **self.copies.extras(sample)}


def _usage(model: Any, jobs: list[Job], texts: list[Completion]) -> dict[str, int]:
    # Each prompt counts once, however many completions it has (as OpenAI counts it).
    prompt_tokens = sum(len(model.tokenizer.encode(job.request.prompt))
                        for job in jobs if job.request.prompt)
    completion_tokens = sum(text.tokens for text in texts)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def _stream(head: dict[str, Any], model: Any, jobs: list[Job],
                  chunks: asyncio.Queue[tuple[int, str] | None], usage: bool, extras: _Extras
                  ) -> AsyncIterator[str]:
    def event(data: Any) -> str:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    async for index, text in pieces(chunks, len(jobs)):
        yield event({**head, "choices": [_choice(index, text, None)]})
    samples: list[Sample] = []
    try:
        for job in jobs:
            rows = [Sample(text, row) for text, row
                    in zip(job.future.result(), extras.labels or [{}] * job.rows, strict=True)]
            await extras.copies.apply(rows, guards=job.request.guards)
            samples += rows
    except Exception as exc:
        if not isinstance(exc, WeftError):
            log.exception("generation failed")
        yield event(error_body(str(exc) if isinstance(exc, WeftError)
                               else "generation failed; see the server log",
                               kind="server_error"))
        return
    for i, sample in enumerate(samples):
        yield event({**head, "choices": [{**_choice(i, "", sample.text.finish_reason),
                                          **extras(sample)}]})
    if usage:
        yield event({**head, "choices": [],
                     "usage": _usage(model, jobs, [s.text for s in samples])})
    yield "data: [DONE]\n\n"
