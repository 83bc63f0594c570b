"""Generation requests from the event loop to the shared batch, and their answers back.

Every route that generates goes through :class:`Generations`: it waits for rows (bounded, see
:class:`~weft.serving.limits.Rows`), submits the request to the batch of its model (one
:class:`~weft.generation.batch.BatchedGenerator` per model and quantization, stepping in a
thread of its own, or in a process of its own (:mod:`weft.serving.batch_process`,
``weft serve --batch-in process``), so the event loop stays free), and hands back the texts,
or the text as it comes for streaming. A request whose client leaves, streamed or not, is
cancelled: its rows leave the batch at the next step. A batch whose model the registry no
longer holds (reloaded or dropped) is closed once its last request ends. Shutting down cancels
everything.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from weft.config import GenerationConfig
from weft.generation import Completion
from weft.generation.batch import BatchedGenerator, BatchRequest
from weft.generation.copy_guard import CopyGuard
from weft.generation.generate import CANCELLED
from weft.serving.batch_process import BatchProcess
from weft.serving.limits import Limits, Rows
from weft.serving.metrics import ServerMetrics

Batch = BatchedGenerator | BatchProcess  # a model's batch: in a thread, or a process of its own

# Seconds between a stream's events after its first: tokens that come meanwhile are sent in
# one event (50 events a second at most, smooth to read, and a tenth of the writes).
STREAM_INTERVAL = 0.02


class Stats:
    def __init__(self) -> None:
        self.completed = 0
        self.cancelled = 0
        self.rejected = 0


class Job:
    """One request in a batch, seen from the event loop: a future for its texts and, when
    streamed, a queue of ``(index, chunk)`` pieces ending with ``None``."""

    def __init__(self, prompt: str, config: GenerationConfig, streamed: bool,
                 chunks: asyncio.Queue[tuple[int, str] | None] | None = None,
                 first_index: int = 0, prefixes: list[list[int]] | None = None,
                 guards: list[CopyGuard] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.config = config
        self.rows = config.num_return_sequences
        self.arrived = time.perf_counter()
        self.ended: float | None = None
        self.future: asyncio.Future[list[Completion]] = self.loop.create_future()
        # Several jobs may share one queue (OpenAI's list of prompts), each its own indices.
        self.chunks = chunks if chunks is not None else asyncio.Queue()
        self.first_index = first_index
        self._buffer: list[tuple[int, str]] = []
        self._buffer_lock = threading.Lock()
        self._drain_scheduled = False
        self._drained_once = False
        self.request = BatchRequest(prompt, config, self._done,
                                    on_text=self._text if streamed else None, prefixes=prefixes,
                                    guards=guards)

    # Called in the batch's thread. Chunks gather in a buffer that the loop drains: the first
    # at once (time to first token), later ones at most every STREAM_INTERVAL, so a stream
    # sends tens of events a second, not one per token: each event is a socket write and a
    # pass through the middleware, which cost more than the token (docs/benchmarks.md,
    # "Serving"). The end is queued after the last drain, so every chunk comes before it.
    def _text(self, index: int, chunk: str) -> None:
        with self._buffer_lock:
            self._buffer.append((self.first_index + index, chunk))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
            first, self._drained_once = not self._drained_once, True
        if first:
            self.loop.call_soon_threadsafe(self._drain)
        else:
            self.loop.call_soon_threadsafe(self.loop.call_later, STREAM_INTERVAL, self._drain)

    def _drain(self) -> None:
        with self._buffer_lock:
            buffered, self._buffer, self._drain_scheduled = self._buffer, [], False
        for piece in buffered:
            self.chunks.put_nowait(piece)

    def _done(self, result: list[Completion] | BaseException) -> None:
        self.loop.call_soon_threadsafe(self._resolve, result)

    def _resolve(self, result: list[Completion] | BaseException) -> None:
        self._drain()
        self.ended = time.perf_counter()
        if isinstance(result, BaseException):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)
        self.chunks.put_nowait(None)

    def cancel(self) -> None:
        self.request.cancel()

    def elapsed(self) -> float:
        """Seconds from arrival to the end (or to now)."""
        return (self.ended or time.perf_counter()) - self.arrived

    @property
    def cancelled(self) -> bool:
        """Whether it was stopped before it finished (its client left, or the server)."""
        if not self.future.done() or self.future.exception() is not None:
            return False
        return any(text.finish_reason == CANCELLED for text in self.future.result())

    def pieces(self) -> AsyncIterator[tuple[int, str]]:
        return pieces(self.chunks, 1)


async def pieces(chunks: asyncio.Queue[tuple[int, str] | None], jobs: int
                 ) -> AsyncIterator[tuple[int, str]]:
    """``(index, text)`` from the queue of ``jobs`` jobs until each has ended; pieces that
    arrived together are joined per index (fewer, larger events when the client reads slower
    than the batch writes)."""
    running = jobs
    while running:
        joined: dict[int, str] = {}
        item = await chunks.get()
        while True:
            if item is None:
                running -= 1
            else:
                joined[item[0]] = joined.get(item[0], "") + item[1]
            if chunks.empty() or not running:
                break
            item = chunks.get_nowait()
        for piece in joined.items():
            yield piece


class _ModelBatch:
    """A model's batch, and how many jobs are in it or waiting for rows to join it."""

    def __init__(self, model: Any, batch: Batch) -> None:
        self.model = model
        self.batch = batch
        self.jobs = 0


class Generations:
    """The batches of the loaded models, the rows they may use, and what they did.

    ``holds(model)`` says whether the registry still holds a model: a batch whose model it
    no longer holds (reloaded with new weights, or dropped for another) is closed as soon as
    its last job ends, so there is never an idle batch (a process, by default) for a model
    that is not loaded. Without ``holds``, every model is taken to be held.
    """

    def __init__(self, limits: Limits, step_fn: Callable[[Any], Callable[..., Any]] | None = None,
                 batch_process: bool = False,
                 holds: Callable[[Any], bool] | None = None) -> None:
        self.rows = Rows(limits.max_rows, limits.max_waiting, limits.queue_timeout)
        self.stats = Stats()
        self.step_fn = step_fn  # stepper -> its compiled step (weft serve --compile)
        self.batch_process = batch_process  # each batch in a process of its own, or a thread
        self.holds = holds or (lambda model: True)
        self.metrics: ServerMetrics | None = None
        self._batches: dict[tuple[int, str], _ModelBatch] = {}
        self._closing: list[threading.Thread] = []

    def batch_rows(self) -> int:
        return sum(entry.batch.rows for entry in self._batches.values())

    def batches(self) -> list[Batch]:
        """The open batches (closed ones, and those being closed, are not among them)."""
        return [entry.batch for entry in self._batches.values()]

    def _entry(self, model: Any, quantize: str) -> _ModelBatch:
        key = (id(model), quantize)
        entry = self._batches.get(key)
        if entry is None or entry.model is not model or entry.batch.closed:
            batch: Batch
            if self.batch_process:
                batch = BatchProcess(model.module, model.tokenizer, quantize=quantize,
                                     on_step=self._count_tokens(model), step_fn=self.step_fn)
            else:
                batch = BatchedGenerator(model.module, model.tokenizer, quantize=quantize,
                                         on_step=self._count_tokens(model))
                if self.step_fn is not None:
                    batch.use_step(self.step_fn(batch.stepper))
            self.sweep()
            self._batches[key] = entry = _ModelBatch(model, batch)
        return entry

    def batch_for(self, model: Any, quantize: str) -> Batch:
        """The batch of ``model`` and ``quantize``, started when there is none."""
        return self._entry(model, quantize).batch

    def _count_tokens(self, model: Any) -> Callable[[int], None]:
        name = model.run_dir.name if hasattr(model, "run_dir") else "model"

        def count(tokens: int) -> None:
            if tokens and self.metrics is not None:
                self.metrics.tokens.labels(model=name).inc(tokens)

        return count

    def sweep(self) -> None:
        """Close the batches no job uses whose model is no longer held (or that have ended).
        Called from the event loop: when a batch starts, a job ends, and a model is loaded."""
        for key, entry in list(self._batches.items()):
            if entry.jobs == 0 and (entry.batch.closed or not self.holds(entry.model)):
                del self._batches[key]
                # Closing waits for the batch's thread or process to end (a process takes
                # about a second): not in the event loop, which would stall every stream.
                self._closing = [t for t in self._closing if t.is_alive()]
                closer = threading.Thread(target=entry.batch.close, name="weft-batch-close",
                                          daemon=True)
                closer.start()
                self._closing.append(closer)

    async def start(self, model: Any, prompt: str, config: GenerationConfig,
                    streamed: bool = False,
                    chunks: asyncio.Queue[tuple[int, str] | None] | None = None,
                    first_index: int = 0, prefixes: list[list[int]] | None = None,
                    guards: list[CopyGuard] | None = None) -> Job:
        """Wait for rows (:class:`~weft.serving.limits.Busy` when none come), then join the
        model's batch; ``prefixes`` are each row's label token ids, ``guards`` each row's
        copy guard (``max_copy`` while streaming)."""
        entry = self._entry(model, config.quantize)
        job = Job(prompt, config, streamed, chunks, first_index, prefixes, guards)
        # Counted from now: the batch stays open while the job waits for rows, even if its
        # model is reloaded meanwhile.
        entry.jobs += 1
        try:
            await self.rows.acquire(job.rows)
        except BaseException:
            self._left(entry)
            raise
        try:
            entry.batch.submit(job.request)
        except BaseException:
            self.rows.release(job.rows)
            self._left(entry)
            raise
        job.future.add_done_callback(lambda _: self._finished(job, entry))
        return job

    def _left(self, entry: _ModelBatch) -> None:
        entry.jobs -= 1
        self.sweep()

    def _finished(self, job: Job, entry: _ModelBatch) -> None:
        self.rows.release(job.rows)
        self._left(entry)
        if job.cancelled:
            self.stats.cancelled += 1
        else:
            self.stats.completed += 1
        if self.metrics is not None and not job.future.exception():
            now = time.perf_counter()
            self.metrics.latency.observe(now - job.arrived)
            if job.request.first_token_at is not None:
                self.metrics.first_token.observe(job.request.first_token_at - job.arrived)

    async def finish(self, job: Job, is_disconnected: Callable[[], Awaitable[bool]]
                     ) -> list[Completion]:
        """The texts of an unstreamed job, cancelling it if the client leaves meanwhile."""
        try:
            # Poll for the client leaving: nothing else tells a plain (unstreamed) handler.
            while not job.future.done():
                await asyncio.wait([job.future], timeout=0.2)
                if not job.future.done() and await is_disconnected():
                    job.cancel()
            return job.future.result()
        finally:
            job.cancel()  # also when this handler itself is cancelled

    def close(self) -> None:
        for entry in self._batches.values():
            entry.batch.close()
        self._batches.clear()
        for closer in self._closing:
            closer.join()


class StreamThenCancel(StreamingResponse):
    """Server-sent events that cancel their jobs however the stream ends: finished, failed, or
    the client gone (whichever way the ASGI server reports that)."""

    def __init__(self, content: AsyncIterator[str], jobs: list[Job]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        self._jobs = jobs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for job in self._jobs:
                job.cancel()
