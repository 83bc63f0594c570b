"""weft's own JSON API, under ``/api``: the runs, their metrics, generating, tagging, health.

The OpenAI-compatible endpoints are in :mod:`weft.serving.openai_api`; both generate through
the same shared batch (:mod:`weft.serving.jobs`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import torch
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from weft.errors import WeftError
from weft.generation.samples import Sample, label_plan
from weft.runs import LANGUAGE_MODEL, TAGGER
from weft.serving.copies import CopyCheck, generate_again
from weft.serving.jobs import Job, StreamThenCancel
from weft.serving.schemas import (
    GenerateRequest,
    GenerateResponse,
    Health,
    Metrics,
    ModelList,
    ModelSummary,
    TaggedSentence,
    TagRequest,
    TagResponse,
    Usage,
)
from weft.serving.server import ServerDep, check_limits, generation_config, load_run, require_key

log = logging.getLogger("weft.serve")

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)])


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get("/models", response_model=ModelList, tags=["runs"])
def list_models(server: ServerDep) -> ModelList:
    """Every run under the served folder, with its configuration and generation defaults, and
    the server's limits."""
    models = []
    for name in server.registry.runs():
        try:
            models.append(ModelSummary(**server.registry.describe(name)))
        except (WeftError, OSError) as exc:
            log.warning("skipping run %s: %s", name, exc)
    return ModelList(models=models, limits=server.limits.to_dict())


@router.get("/runs/{name:path}/metrics", response_model=Metrics, tags=["runs"])
def run_metrics(name: str, server: ServerDep) -> Metrics:
    """The run's ``metrics.jsonl``: one record per evaluation."""
    return Metrics(name=name, records=server.registry.metrics(name))


@router.get("/runs/{name:path}", response_model=ModelSummary, tags=["runs"])
def run_summary(name: str, server: ServerDep) -> ModelSummary:
    """One run's summary, as in GET /api/models."""
    return ModelSummary(**server.registry.describe(name))


@router.get("/health", response_model=Health, tags=["server"])
def health(server: ServerDep) -> Health:
    """Whether the server is up, and how busy it is."""
    rows, stats = server.generations.rows, server.generations.stats
    return Health(status="ok", active=rows.active, waiting=rows.waiting,
                  batch_rows=server.generations.batch_rows(), completed=stats.completed,
                  cancelled=stats.cancelled, rejected=stats.rejected,
                  threads=torch.get_num_threads())


@router.post("/generate", response_model=GenerateResponse, tags=["generate"],
             responses={200: {"content": {"text/event-stream": {
                 "description": "With stream: events `token` ({index, text}), then `done` "
                                "(the full response) or `error` ({detail})."}}}})
async def generate(req: GenerateRequest, request: Request, server: ServerDep) -> Any:
    """Continue ``prompt`` with a language model. Parameters are those of ``weft generate``;
    those left out take the run's defaults."""
    check_limits(server.limits, prompts=[req.prompt], max_new_tokens=req.max_new_tokens,
                 temperature=req.temperature, sequences=req.num_return_sequences or 1,
                 stop=req.stop)
    model = await load_run(server, req.model, LANGUAGE_MODEL)
    options = req.model_dump(exclude={"model", "prompt", "stream", "labels", "copy_meter",
                                      "max_copy"}, exclude_none=True)
    config, labels, prefixes = label_plan(model.labels, model.tokenizer, req.labels,
                                          generation_config(model, server.limits, options))
    copies = CopyCheck(model, req.copy_meter, req.max_copy)
    # Cleaned like the training text (lowercased, Unicode form), as `weft generate` does.
    prompt = model.prepare_prompt(req.prompt)
    guards = copies.guards(config.num_return_sequences) if req.stream else None
    job = await server.generations.start(model, prompt, config, streamed=req.stream,
                                         prefixes=prefixes, guards=guards)
    if req.stream:
        return StreamThenCancel(_events(req.model, model, job, labels, copies), [job])
    texts = await server.generations.finish(job, request.is_disconnected)
    samples = [Sample(text, row) for text, row in zip(texts, labels, strict=True)]
    await copies.apply(samples, again=generate_again(server, model, prompt, config, prefixes,
                                                     request.is_disconnected))
    return _response(req.model, model, job, samples, copies)


def _response(name: str, model: Any, job: Job, samples: list[Sample],
              copies: CopyCheck) -> GenerateResponse:
    prompt = job.request.prompt
    texts = [sample.text for sample in samples]
    usage = Usage(prompt_tokens=len(model.tokenizer.encode(prompt)) if prompt else 0,
                  completion_tokens=sum(t.tokens for t in texts))
    extras = [copies.extras(s) for s in samples]
    return GenerateResponse(model=name, prompt=prompt, texts=list(texts),
                            finish_reasons=[t.finish_reason for t in texts],
                            labels=[s.labels for s in samples],
                            longest_copy=[e["longest_copy"] for e in extras]
                            if copies.reported else [],
                            tries=[e["tries"] for e in extras] if copies.bounded else [],
                            cut=[e["cut"] for e in extras] if copies.bounded else [],
                            usage=usage, elapsed=round(job.elapsed(), 4),
                            cancelled=job.cancelled)


async def _events(name: str, model: Any, job: Job, labels: list[dict[str, str]],
                  copies: CopyCheck) -> AsyncIterator[str]:
    async for index, text in job.pieces():
        yield _sse("token", {"index": index, "text": text})
    try:
        texts = job.future.result()
    except WeftError as exc:
        yield _sse("error", {"detail": str(exc)})
        return
    except Exception:
        log.exception("generation failed")
        yield _sse("error", {"detail": "generation failed; see the server log"})
        return
    samples = [Sample(text, row) for text, row in zip(texts, labels, strict=True)]
    await copies.apply(samples, guards=job.request.guards)
    yield _sse("done", _response(name, model, job, samples, copies).model_dump())


# exclude_none: a part-of-speech tagger's sentences stay {words, tags}, without "spans": null
@router.post("/tag", response_model=TagResponse, response_model_exclude_none=True, tags=["tag"])
async def tag(req: TagRequest, server: ServerDep) -> Any:
    """Tag raw text with a tagger run: it is split into sentences and words first."""
    check_limits(server.limits, prompts=[req.text], max_new_tokens=None, temperature=None,
                 sequences=1, stop=None, names={"prompt": "text"})
    model = await load_run(server, req.model, TAGGER)
    rows = server.generations.rows
    await rows.acquire(1)  # tagging takes a row's share of the machine
    try:
        sentences = await run_in_threadpool(tag_sentences, model, req.text)
    finally:
        rows.release(1)
    return TagResponse(model=req.model, sentences=sentences)


def tag_sentences(model: Any, text: str) -> list[TaggedSentence]:
    """Sentences of (words, tags) and a span tagger's spans, from the tagger's ``tag_text``."""
    return [TaggedSentence(words=list(s.words), tags=list(s.tags),
                           spans=getattr(s, "spans", None)) for s in model.tag_text(text)]
