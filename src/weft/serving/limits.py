"""What protects the server: size limits, a bound on concurrent work, and a body-size guard.

Generation holds a CPU (or GPU) for its whole length, so the number running at once is bounded
by :class:`Slots`; a request waits for a slot for at most ``queue_timeout`` seconds (and only
``max_waiting`` may wait), else it gets 503 with ``Retry-After``. Request bodies are refused
with 413 before they are read into memory when they are too large.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """Server-side limits; each is a ``weft serve`` flag of the same name."""

    max_new_tokens: int = 1000
    max_prompt_chars: int = 4000  # also bounds the text sent to /v1/tag
    max_sequences: int = 4  # num_return_sequences
    max_stop_strings: int = 8
    max_body_bytes: int = 64 * 1024
    max_concurrent: int = 2  # generations (and taggings) running at once
    max_waiting: int = 16  # requests queued for a slot; more get 503 at once
    queue_timeout: float = 10.0  # seconds a request waits for a slot before 503
    max_loaded: int = 4  # models kept in memory (least recently used is dropped)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Busy(Exception):
    """No generation slot became free in time."""


class Slots:
    """At most ``size`` holders at once; waiters are bounded in number and in time.

    Used only from the event loop. A slot is released when the worker thread really ends (not
    when the client goes away), so the bound holds for the threads doing the work.
    """

    def __init__(self, size: int, max_waiting: int, timeout: float) -> None:
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.size = size
        self.max_waiting = max_waiting
        self.timeout = timeout
        self.active = 0
        self.waiting = 0

    def _for_this_loop(self) -> asyncio.Semaphore:
        # Made on first use, and again if the app is run by a new event loop (test clients).
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore, self._loop = asyncio.Semaphore(self.size), loop
            self.active = self.waiting = 0
        return self._semaphore

    async def acquire(self) -> None:
        semaphore = self._for_this_loop()
        if self.waiting >= self.max_waiting and semaphore.locked():
            raise Busy
        self.waiting += 1
        try:
            await asyncio.wait_for(semaphore.acquire(), self.timeout)
        except TimeoutError:
            raise Busy from None
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        if self._semaphore is not None:
            self._semaphore.release()


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
            await _too_large(send, self.max_bytes)
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
                await _too_large(send, self.max_bytes)
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


async def _too_large(send: Send, max_bytes: int) -> None:
    body = json.dumps({"detail": f"request body is larger than {max_bytes} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
