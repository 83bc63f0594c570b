"""The ASGI app: weft's JSON API under ``/api`` (:mod:`~weft.serving.routes`), the
OpenAI-compatible API under ``/v1`` (:mod:`~weft.serving.openai_api`), Prometheus metrics at
``/metrics``, the playground page at ``/`` and the schema at ``/openapi.json``.

Generation runs in one shared batch per model (:mod:`~weft.serving.jobs`), stepped in a thread
or a process of its own, so the event loop stays free to stream tokens and to notice clients
leaving. A client that leaves cancels its request; shutting down cancels them all.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

import weft
from weft.errors import WeftError
from weft.serving import openai_api, routes
from weft.serving.errors import error_content, is_openai
from weft.serving.jobs import Generations
from weft.serving.limits import AllowedHosts, BodySizeLimit, Busy, Limits
from weft.serving.metrics import CountRequests, ServerMetrics
from weft.serving.openai_api import OpenAIError
from weft.serving.registry import Loader, Root, RunRegistry, UnknownRun
from weft.serving.schemas import ErrorResponse
from weft.serving.server import OverLimit, Server, Unauthorized, require_key

log = logging.getLogger("weft.serve")

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
# The page loads nothing from elsewhere; this keeps it so, and keeps other sites from framing it.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
OPENAI_ENDPOINTS = ("GET /v1/models", "GET /v1/models/{model}", "POST /v1/completions")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in [
        (400, "Bad parameters (the message says which), or a run that cannot be used."),
        (401, "With --api-key: no Authorization: Bearer header with the key."),
        (404, "No run of that name."),
        (413, "Request body too large."),
        (422, "Malformed request or a value over a server limit."),
        (503, "Busy: no rows became free in time (see Retry-After)."),
    ]
}


def _readable(exc: RequestValidationError) -> tuple[str, str | None]:
    """The validation errors in one line, and the first field they name."""
    parts, fields = [], []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        if where:
            fields.append(where.split(".")[0])
    return "; ".join(parts) or "invalid request", (fields[0] if fields else None)


def create_app(
    root: Root | Sequence[Root],
    *,
    limits: Limits | None = None,
    device: str = "cpu",
    allowed_hosts: list[str] | None = None,
    loader: Loader | None = None,
    api_key: str | None = None,
    compile_step: Callable[[Any], Callable[..., Any]] | None = None,
    batch_process: bool = False,
) -> FastAPI:
    """The app serving every run under ``root`` (or the one run that ``root`` is, or the
    built-in model it names, such as ``builtin:english``, served under that name); or under
    each of several such roots, served together (serving/registry.py names their runs).

    ``allowed_hosts`` restricts the Host header (``weft serve`` passes the loopback names when
    bound to loopback, which defeats DNS rebinding); ``loader`` replaces :func:`weft.load`;
    ``api_key`` makes every API request need ``Authorization: Bearer <api_key>``;
    ``compile_step`` turns a stepper into its compiled step (``weft serve --compile``; a
    module-level function, as a batch process receives it pickled); ``batch_process`` steps
    each model's batch in a process of its own (what ``weft serve`` does by default), not a
    thread.
    """
    limits = limits or Limits()
    registry = RunRegistry(root, device=device, max_loaded=limits.max_loaded, loader=loader)
    # A batch lives as long as its model is loaded (and its last request has ended).
    generations = Generations(limits, step_fn=compile_step, batch_process=batch_process,
                              holds=registry.holds)
    metrics = ServerMetrics(lambda: generations.rows.waiting, generations.batch_rows)
    generations.metrics = metrics
    server = Server(registry, limits, generations, metrics, api_key or None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        generations.close()  # shutting down: every batch stops at its next step

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
    app.state.server = server
    app.state.registry = server.registry
    app.include_router(routes.router)
    app.include_router(openai_api.router)

    # -- errors: weft's API answers {"detail"}, the OpenAI API {"error": {...}} -------------
    def error(request: Request, status: int, message: str, param: str | None = None,
              headers: Mapping[str, str] | None = None, code: str | None = None) -> JSONResponse:
        return JSONResponse(error_content(request.url.path, status, message, param, code),
                            status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def no_route(request: Request, exc: HTTPException) -> JSONResponse:
        # No route, or not that method: under /v1 in OpenAI's shape, which its clients parse.
        message = str(exc.detail)
        if is_openai(request.url.path) and exc.status_code in (404, 405):
            message = (f"no {request.method} {request.url.path} here: weft offers "
                       f"{', '.join(OPENAI_ENDPOINTS)} (no chat completions)")
        return error(request, exc.status_code, message, headers=exc.headers)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, _: Unauthorized) -> JSONResponse:
        return error(request, 401, "a valid API key is needed: send the header "
                     "'Authorization: Bearer KEY'", headers={"www-authenticate": "Bearer"},
                     code="invalid_api_key")

    @app.exception_handler(UnknownRun)
    async def unknown_run(request: Request, exc: UnknownRun) -> JSONResponse:
        return error(request, 404, str(exc), "model", code="model_not_found")

    @app.exception_handler(WeftError)
    async def weft_error(request: Request, exc: WeftError) -> JSONResponse:
        if isinstance(exc, OpenAIError):
            return error(request, exc.status, str(exc), exc.param, code=exc.code)
        if isinstance(exc, OverLimit):  # weft's API: 422, as for any out-of-range value
            return error(request, 400 if is_openai(request.url.path) else 422, str(exc),
                         exc.param)
        return error(request, 400, str(exc))

    @app.exception_handler(Busy)
    async def busy(request: Request, _: Busy) -> JSONResponse:
        generations.stats.rejected += 1
        return error(request, 503, f"the server is busy ({limits.max_rows} rows generating); "
                     "try again shortly", headers={"retry-after": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "application/json")
        if request.method == "POST" and "json" not in content_type.lower():
            # Also what keeps other web pages out: their "simple" cross-site POSTs cannot
            # send application/json without a CORS preflight, which this server never grants.
            return error(request, 415, "send the request as JSON, with content-type: "
                                       "application/json")
        message, param = _readable(exc)
        return error(request, 400 if is_openai(request.url.path) else 422, message, param)

    # -- metrics and the page ------------------------------------------------------------------
    @app.get("/metrics", dependencies=[Depends(require_key)], tags=["server"],
             response_class=Response)
    def prometheus_metrics() -> Response:
        """Counters in Prometheus text format."""
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(_SecurityHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if allowed_hosts:
        app.add_middleware(AllowedHosts, hosts=allowed_hosts)
    app.add_middleware(CountRequests, metrics=metrics)
    return app


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
