"""What protects the server: size limits, a bound on concurrent work, a body-size guard and
a Host header check.

Generations share one running batch; the rows in it are bounded by :class:`Rows` (a sequence
is a row). A request waits to join for at most ``queue_timeout`` seconds (and only
``max_waiting`` rows may wait), else it gets 503 with ``Retry-After``. Request bodies are refused
with 413 before they are read into memory when they are too large. Both middlewares answer in
the JSON error shape of the API the path belongs to (:mod:`~weft.serving.errors`).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

from weft.serving.errors import error_content

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """Server-side limits; each is a ``weft serve`` flag of the same name."""

    max_new_tokens: int = 1000
    max_prompt_chars: int = 4000  # also bounds the text sent to /api/tag
    max_sequences: int = 4  # num_return_sequences (OpenAI: n, times the prompts in a list)
    max_stop_strings: int = 8
    max_body_bytes: int = 64 * 1024
    max_rows: int = 64  # rows in the running batch (a sequence is a row; a tagging is one)
    max_waiting: int = 256  # rows of requests waiting to join; more get 503 at once
    queue_timeout: float = 10.0  # seconds a request waits to join before 503
    max_loaded: int = 4  # models kept in memory (least recently used is dropped)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Busy(Exception):
    """No rows became free in time, or too many rows already wait."""


class Rows:
    """At most ``size`` rows in use at once; waiting requests are served first come, first
    served, bounded in rows (``max_waiting``) and in time (``timeout``).

    Used only from the event loop. Rows are released when the batch really lets the request
    go (not when the client goes away), so the bound holds for the work being done.
    """

    def __init__(self, size: int, max_waiting: int, timeout: float) -> None:
        self.size = size
        self.max_waiting = max_waiting
        self.timeout = timeout
        self.active = 0
        self.waiting = 0
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _for_this_loop(self) -> asyncio.AbstractEventLoop:
        # A new event loop (a test client started again) starts from an empty server.
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._queue = loop, deque()
            self.active = self.waiting = 0
        return loop

    async def acquire(self, count: int = 1) -> None:
        loop = self._for_this_loop()
        if not self._queue and self.active + count <= self.size:
            self.active += count
            return
        if self.waiting + count > self.max_waiting or count > self.size:
            raise Busy
        granted: asyncio.Future[None] = loop.create_future()
        self._queue.append((count, granted))
        self.waiting += count
        try:
            await asyncio.wait_for(asyncio.shield(granted), self.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if granted.done():  # granted as the wait ended: give the rows back
                self.release(count)
            else:
                granted.cancel()
                self._queue.remove((count, granted))
                self.waiting -= count
                self._grant()  # a smaller request behind this one may fit now
            if isinstance(exc, TimeoutError):
                raise Busy from None
            raise

    def release(self, count: int = 1) -> None:
        self.active -= count
        self._grant()

    def _grant(self) -> None:
        while self._queue and self.active + self._queue[0][0] <= self.size:
            count, granted = self._queue.popleft()
            self.waiting -= count
            self.active += count
            granted.set_result(None)


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes``, declared or streamed.

    The body (small by definition) is read here first and replayed to the app, so an oversized
    one is refused before any route sees it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(scope, send, self.max_bytes)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _too_large(scope, send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)


class AllowedHosts:
    """ASGI middleware: 400 for a request whose ``Host`` header names none of ``hosts``
    (``weft serve`` bound to loopback allows only loopback names, which defeats DNS
    rebinding). Starlette's ``TrustedHostMiddleware`` does the same, but answers in plain text.
    """

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = {h.lower().strip("[]") for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or host_name(scope) in self.hosts:
            await self.app(scope, receive, send)
            return
        await send_error(scope, send, 400, "the Host header must name this server: "
                         + ", ".join(sorted(self.hosts)), code="invalid_host")


def host_name(scope: Scope) -> str:
    """The host of the request's ``Host`` header, lowercased, without port or IPv6 brackets
    ("" when there is none)."""
    host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.partition(":")[0]


async def _too_large(scope: Scope, send: Send, max_bytes: int) -> None:
    await send_error(scope, send, 413, f"request body is larger than {max_bytes} bytes")


async def send_error(scope: Scope, send: Send, status: int, message: str,
                     code: str | None = None) -> None:
    """Answer the request with a JSON error, from middleware (no app behind it)."""
    body = json.dumps(error_content(scope.get("path", ""), status, message, code=code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
