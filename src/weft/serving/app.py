"""The ASGI app: JSON API under ``/v1``, the playground page at ``/``, the schema at
``/openapi.json``.

Generation runs in a worker thread (PyTorch releases the GIL while it computes) so the event
loop stays free to stream tokens and to notice clients leaving. Every job has a stop flag that
:func:`weft.generation.generate` checks between tokens; it is set when the client disconnects
(streamed or not) and when the server shuts down, so abandoned work ends within one token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import Receive, Scope, Send

import weft
from weft.errors import WeftError
from weft.serving.limits import BodySizeLimit, Busy, Limits, Slots
from weft.serving.registry import (
    LANGUAGE_MODEL,
    TAGGER,
    Loader,
    RunRegistry,
    UnknownRun,
    run_kind,
)
from weft.serving.schemas import (
    ErrorResponse,
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

log = logging.getLogger("weft.serve")

STATIC = Path(__file__).resolve().parent / "static"
MIN_TEMPERATURE = 1e-3
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
# The page loads nothing from elsewhere; this keeps it so, and keeps other sites from framing it.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in [
        (400, "Bad parameters (the message says which), or a run that cannot be used."),
        (404, "No run of that name."),
        (413, "Request body too large."),
        (422, "Malformed request or a value over a server limit."),
        (503, "Busy: no generation slot became free in time (see Retry-After)."),
    ]
}


class _Stats:
    def __init__(self) -> None:
        self.completed = 0
        self.cancelled = 0
        self.rejected = 0


class _Job:
    """One generation in a worker thread, with the flag that stops it between tokens."""

    def __init__(self, model: Any, prompt: str, config: Any,
                 on_text: Callable[[int, str], None] | None = None) -> None:
        self.model = model
        self.prompt = prompt
        self.config = config
        self.on_text = on_text
        self.stop = threading.Event()
        self.cancelled = False
        self.elapsed = 0.0

    def run(self) -> list[str]:
        from weft.generation import generate

        start = time.perf_counter()
        try:
            return generate(self.model.module, self.model.tokenizer, self.prompt, self.config,
                            on_text=self.on_text, should_stop=self.stop.is_set)
        finally:
            self.elapsed = time.perf_counter() - start
            self.cancelled = self.stop.is_set()

    def response(self, name: str, texts: list[str]) -> GenerateResponse:
        tokenizer = self.model.tokenizer
        usage = Usage(prompt_tokens=len(tokenizer.encode(self.prompt)) if self.prompt else 0,
                      completion_tokens=sum(len(tokenizer.encode(t)) for t in texts if t))
        return GenerateResponse(model=name, prompt=self.prompt, texts=texts, usage=usage,
                                elapsed=round(self.elapsed, 4), cancelled=self.cancelled)


class _StreamThenStop(StreamingResponse):
    """A streamed response that stops its job however it ends: finished, failed, or the client
    gone (whichever way the ASGI server reports that)."""

    def __init__(self, content: AsyncIterator[str], stop: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        self._stop = stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stop()


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _readable(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def create_app(
    root: str | Path,
    *,
    limits: Limits | None = None,
    device: str = "cpu",
    allowed_hosts: list[str] | None = None,
    loader: Loader | None = None,
) -> FastAPI:
    """The app serving every run under ``root`` (or the one run that ``root`` is).

    ``allowed_hosts`` restricts the Host header (``weft serve`` passes the loopback names when
    bound to loopback, which defeats DNS rebinding); ``loader`` replaces :func:`weft.load`.
    """
    limits = limits or Limits()
    registry = RunRegistry(root, device=device, max_loaded=limits.max_loaded, loader=loader)
    pool: list[ThreadPoolExecutor] = []  # made on first use; again after a shutdown

    def executor() -> ThreadPoolExecutor:
        if not pool:
            pool.append(ThreadPoolExecutor(max_workers=limits.max_concurrent,
                                           thread_name_prefix="weft-generate"))
        return pool[0]

    slots = Slots(limits.max_concurrent, limits.max_waiting, limits.queue_timeout)
    stats = _Stats()
    running: set[_Job] = set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for job in list(running):  # shutting down: let the worker threads finish now
            job.stop.set()
        if pool:
            pool.pop().shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="weft",
        version=weft.__version__,
        summary="Generate text with, and tag text with, the weft runs in one folder.",
        lifespan=lifespan,
        # The interactive docs pages load their scripts from a CDN; the schema is enough.
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,
    )
    app.state.registry = registry
    app.state.limits = limits
    app.state.slots = slots
    app.state.stats = stats

    # -- errors: always a JSON body with a readable "detail" -------------------------------
    @app.exception_handler(UnknownRun)
    async def unknown_run(_: Request, exc: UnknownRun) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(WeftError)
    async def weft_error(_: Request, exc: WeftError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Busy)
    async def busy(_: Request, exc: Busy) -> JSONResponse:
        stats.rejected += 1
        return JSONResponse(
            {"detail": f"the server is busy ({limits.max_concurrent} generations running); "
                       "try again shortly"},
            status_code=503, headers={"retry-after": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "application/json")
        if request.method == "POST" and "json" not in content_type.lower():
            # Also what keeps other web pages out: their "simple" cross-site POSTs cannot
            # send application/json without a CORS preflight, which this server never grants.
            return JSONResponse({"detail": "send the request as JSON, with content-type: "
                                           "application/json"}, status_code=415)
        return JSONResponse({"detail": _readable(exc)}, status_code=422)

    def over_limit(message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=422)

    async def load(name: str, kind: str) -> Any:
        actual = run_kind(registry.config(name))
        if actual != kind:
            use = "POST /v1/tag" if actual == TAGGER else "POST /v1/generate"
            raise WeftError(f"run {name!r} is a {actual}, not a {kind}: use {use}")
        try:
            return await run_in_threadpool(registry.get, name)
        except WeftError:
            raise
        except Exception as exc:  # a damaged run is the run's problem, reported as such
            log.exception("loading %s failed", name)
            raise WeftError(f"run {name!r} could not be loaded: {exc}") from None

    async def start(job: _Job, done: Callable[[], None] | None = None) -> asyncio.Future[Any]:
        """Run ``job`` in a worker thread once a slot is free; the slot is held until the
        thread ends."""
        await slots.acquire()
        running.add(job)
        future = asyncio.get_running_loop().run_in_executor(executor(), job.run)

        def finished(_: Any) -> None:
            slots.release()
            running.discard(job)
            if job.cancelled:
                stats.cancelled += 1
            else:
                stats.completed += 1
            if done is not None:
                done()

        future.add_done_callback(finished)
        return future

    # -- routes ----------------------------------------------------------------------------
    @app.get("/v1/models", response_model=ModelList, tags=["runs"])
    def list_models() -> ModelList:
        """Every run under the served folder, with its configuration and generation
        defaults, and the server's limits."""
        models = []
        for name in registry.runs():
            try:
                models.append(ModelSummary(**registry.describe(name)))
            except (WeftError, OSError) as exc:
                log.warning("skipping run %s: %s", name, exc)
        return ModelList(models=models, limits=limits.to_dict())

    @app.get("/v1/runs/{name:path}/metrics", response_model=Metrics, tags=["runs"])
    def run_metrics(name: str) -> Metrics:
        """The run's ``metrics.jsonl``: one record per evaluation."""
        return Metrics(name=name, records=registry.metrics(name))

    @app.get("/v1/runs/{name:path}", response_model=ModelSummary, tags=["runs"])
    def run_summary(name: str) -> ModelSummary:
        """One run's summary, as in GET /v1/models."""
        return ModelSummary(**registry.describe(name))

    @app.get("/v1/health", response_model=Health, tags=["server"])
    def health() -> Health:
        """Whether the server is up, and how busy it is."""
        return Health(status="ok", active=slots.active, waiting=slots.waiting,
                      completed=stats.completed, cancelled=stats.cancelled,
                      rejected=stats.rejected, threads=torch.get_num_threads())

    @app.post("/v1/generate", response_model=GenerateResponse, tags=["generate"],
              responses={200: {"content": {"text/event-stream": {
                  "description": "With stream: events `token` ({index, text}), then `done` "
                                 "(the full response) or `error` ({detail})."}}}})
    async def generate(req: GenerateRequest, request: Request) -> Any:
        """Continue ``prompt`` with a language model. Parameters are those of
        ``weft generate``; those left out take the run's defaults."""
        if len(req.prompt) > limits.max_prompt_chars:
            return over_limit(f"prompt is {len(req.prompt)} characters; this server takes at "
                              f"most {limits.max_prompt_chars}")
        if req.max_new_tokens is not None and req.max_new_tokens > limits.max_new_tokens:
            return over_limit(f"max_new_tokens is at most {limits.max_new_tokens} here")
        if req.temperature is not None and 0 < req.temperature < MIN_TEMPERATURE:
            # logits / temperature would overflow float32 to inf, then NaN probabilities.
            return over_limit(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}")
        if (req.num_return_sequences or 1) > limits.max_sequences:
            return over_limit(f"num_return_sequences is at most {limits.max_sequences} here")
        if req.stop and (len(req.stop) > limits.max_stop_strings
                         or any(not s or len(s) > 100 for s in req.stop)):
            return over_limit(f"stop takes at most {limits.max_stop_strings} non-empty strings "
                              "of up to 100 characters")
        model = await load(req.model, LANGUAGE_MODEL)
        options = req.model_dump(exclude={"model", "prompt", "stream"}, exclude_none=True)
        config = model.generation_config(**options)
        if config.max_new_tokens > limits.max_new_tokens:  # the run's default is too long here
            config = model.generation_config(**{**options,
                                                "max_new_tokens": limits.max_new_tokens})

        # Cleaned like the training text (lowercased, Unicode form), as `weft generate` does.
        prompt = model.prepare_prompt(req.prompt) if hasattr(model, "prepare_prompt") \
            else req.prompt
        if req.stream:
            return await stream(req.model, model, prompt, config)

        job = _Job(model, prompt, config)
        future = await start(job)
        try:
            # Poll for the client leaving: nothing else tells a plain (unstreamed) handler.
            while not future.done():
                await asyncio.wait([future], timeout=0.2)
                if not future.done() and await request.is_disconnected():
                    job.stop.set()
            texts = future.result()
        finally:
            job.stop.set()  # also when this handler itself is cancelled
        return job.response(req.model, texts)

    async def stream(name: str, model: Any, prompt: str, config: Any) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()

        def on_text(index: int, text: str) -> None:  # called in the worker thread
            loop.call_soon_threadsafe(queue.put_nowait, (index, text))

        job = _Job(model, prompt, config, on_text=on_text)
        # The end marker follows every chunk: both are queued on the loop in thread order.
        future = await start(job, done=lambda: queue.put_nowait(None))

        async def events() -> AsyncIterator[str]:
            while (item := await queue.get()) is not None:
                yield _sse("token", {"index": item[0], "text": item[1]})
            try:
                texts = future.result()
            except WeftError as exc:
                yield _sse("error", {"detail": str(exc)})
                return
            except Exception:
                log.exception("generation failed")
                yield _sse("error", {"detail": "generation failed; see the server log"})
                return
            yield _sse("done", job.response(name, texts).model_dump())

        return _StreamThenStop(events(), job.stop.set)

    @app.post("/v1/tag", response_model=TagResponse, tags=["tag"])
    async def tag(req: TagRequest) -> Any:
        """Tag raw text with a tagger run: it is split into sentences and words first."""
        if len(req.text) > limits.max_prompt_chars:
            return over_limit(f"text is {len(req.text)} characters; this server takes at most "
                              f"{limits.max_prompt_chars}")
        model = await load(req.model, TAGGER)
        await slots.acquire()
        try:
            sentences = await run_in_threadpool(_tag, model, req.text)
        finally:
            slots.release()
        return TagResponse(model=req.model, sentences=sentences)

    # -- the page ----------------------------------------------------------------------------
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(_SecurityHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return app


def _tag(model: Any, text: str) -> list[TaggedSentence]:
    """Sentences of (words, tags), from a tagger's ``tag_text`` (per sentence) when it has one,
    else from its ``tag`` (word, tag) pairs as one sentence."""
    if hasattr(model, "tag_text"):
        return [TaggedSentence(words=list(s.words), tags=list(s.tags))
                for s in model.tag_text(text)]
    pairs: list[tuple[str, str]] = list(model.tag(text))
    return [TaggedSentence(words=[w for w, _ in pairs], tags=[t for _, t in pairs])]


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
