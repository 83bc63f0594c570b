"""A model's serving batch in a process of its own, so it never waits for the event loop.

In the server's process, the batch's thread and the event loop share one interpreter lock,
which changes hands at every PyTorch call: under load the batch thread spent about 60% more
CPU per token than stepping alone, and the two could never use two cores at once
(docs/benchmarks.md, "Serving"). Here a spawned child process (weft and PyTorch only) runs
the same :class:`~weft.generation.batch.BatchedGenerator`. It receives the model's module and
tokenizer once (tensors through shared memory, not copied), then requests and cancellations
over a pipe, and answers after each round of the batch with one message: that round's text,
finished requests and token count. So the batch behaves as in a thread (seeded texts, rows
freed at the next step when cancelled, the same errors), and :class:`BatchProcess` offers what
:class:`~weft.serving.jobs.Generations` uses of a batch: ``submit``, ``close``, ``rows``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import torch
import torch.multiprocessing

from weft.errors import WeftError
from weft.generation.batch import BatchedGenerator, BatchRequest
from weft.generation.generate import Completion
from weft.models.rnn_lm import RNNLanguageModel
from weft.tokenizers import Tokenizer

log = logging.getLogger("weft.serve")

# Seconds between messages of rounds that only drew tokens (no text, no request finished):
# their counts (metrics) wait at most this long, and the server reads a tenth of the messages.
QUIET_INTERVAL = 0.02

StepFn = Callable[[Any], Callable[..., Any]]  # a stepper -> its (compiled) step


class BatchProcess:
    """A :class:`BatchedGenerator` for ``module`` and ``tokenizer`` stepping in a child
    process. ``on_step(tokens)`` counts the tokens drawn; ``step_fn`` (a module-level
    function, as it is pickled) compiles the stepper's step there (``weft serve --compile``).
    """

    def __init__(self, module: RNNLanguageModel, tokenizer: Tokenizer, *, quantize: str = "auto",
                 on_step: Callable[[int], None] | None = None,
                 step_fn: StepFn | None = None) -> None:
        self.on_step = on_step
        self.rows = 0  # rows in the child's batch, as of its last message
        self._requests: dict[int, tuple[BatchRequest, float]] = {}  # id -> request, sent at
        self._ids = itertools.count()
        self._lock = threading.Lock()  # the table above, and writes to the pipe
        self._closed = False
        context = torch.multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(
            target=_child, name="weft-batch", daemon=True,
            args=(child_end, module, tokenizer, quantize, step_fn, torch.get_num_threads()))
        self._process.start()
        child_end.close()
        self._reader = threading.Thread(target=self._read, name="weft-batch-reader",
                                        daemon=True)
        self._reader.start()

    @property
    def closed(self) -> bool:
        """Closed, or its process ended (a new one is needed)."""
        return self._closed

    def submit(self, request: BatchRequest) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("this batch process is closed")
            rid = next(self._ids)
            self._requests[rid] = (request, time.perf_counter())
            request.on_cancel = lambda: self._cancel(rid)
            self._pipe.send(("submit", rid, request.prompt, request.config, request.prefixes,
                             request.guards, request.on_text is not None, request.cancelled))

    def _cancel(self, rid: int) -> None:
        with self._lock:
            if rid in self._requests and not self._closed:
                self._pipe.send(("cancel", rid))

    def close(self) -> None:
        """Cancel everything, and wait (a step or so) for the child to answer and end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):  # else it has ended already
                self._pipe.send(("close",))
        self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.kill()
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=5)

    # -- the reader thread: the child's messages to the requests -------------------------------
    def _read(self) -> None:
        while True:
            try:
                tokens, rows, events = self._pipe.recv()
            except (EOFError, OSError):
                break
            self.rows = rows
            for event in events:
                try:
                    self._dispatch(event)
                except Exception:  # a callback's failure must not stop the others
                    log.exception("handing out a generation result failed")
            if tokens and self.on_step is not None:
                self.on_step(tokens)
        with self._lock:
            self._closed = True
            left, self._requests = list(self._requests.values()), {}
        self.rows = 0
        for request, _ in left:  # the child ended without answering them
            request.on_done(RuntimeError("the generation process ended"))

    def _dispatch(self, event: tuple[Any, ...]) -> None:
        kind, rid = event[0], event[1]
        if kind == "text":
            entry = self._requests.get(rid)
            if entry is not None and entry[0].on_text is not None:
                entry[0].on_text(event[2], event[3])
            return
        with self._lock:
            entry = self._requests.pop(rid, None)
        if entry is None:
            return
        request, sent = entry
        if kind == "done":
            _, _, texts, first_after, cuts = event
            if first_after is not None:
                request.first_token_at = sent + first_after
            for guard, cut in zip(request.guards or (), cuts, strict=False):
                guard.cut = cut
            request.on_done([Completion(*text) for text in texts])
        else:  # "error": rebuilt as the kind the routes tell apart
            _, _, is_weft_error, message = event
            request.on_done(WeftError(message) if is_weft_error else RuntimeError(message))


# -- the child process ---------------------------------------------------------------------------
class _Outbox:
    """What a round of the batch produced, sent to the server in one message."""

    def __init__(self, pipe: Connection, batch_rows: Callable[[], int]) -> None:
        self.pipe = pipe
        self.batch_rows = batch_rows
        self.events: list[tuple[Any, ...]] = []
        self.tokens = 0
        self.sent_at = 0.0

    def text(self, rid: int, index: int, chunk: str) -> None:
        self.events.append(("text", rid, index, chunk))

    def done(self, rid: int, received: float, request: BatchRequest,
             result: list[Completion] | BaseException) -> None:
        if isinstance(result, BaseException):
            self.events.append(("error", rid, isinstance(result, WeftError), str(result)))
            return
        first = request.first_token_at
        self.events.append((
            "done", rid, [(str(t), t.finish_reason, t.tokens) for t in result],
            None if first is None else first - received,
            [guard.cut for guard in request.guards or ()]))

    def round_ended(self, tokens: int) -> None:
        self.tokens += tokens
        now = time.perf_counter()
        if self.events or (self.tokens and now - self.sent_at >= QUIET_INTERVAL):
            self.flush(now)

    def flush(self, now: float) -> None:
        events, self.events = self.events, []
        self.pipe.send((self.tokens, self.batch_rows(), events))
        self.tokens, self.sent_at = 0, now


def _child(pipe: Connection, module: RNNLanguageModel, tokenizer: Tokenizer, quantize: str,
           step_fn: StepFn | None, threads: int) -> None:
    """The child's main thread: requests from the pipe into the batch, until told to close or
    the server is gone. The batch's own thread steps, and sends through the outbox."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    torch.set_num_threads(threads)
    batch = BatchedGenerator(module, tokenizer, quantize=quantize)
    outbox = _Outbox(pipe, lambda: batch.rows)
    batch.on_step = outbox.round_ended
    if step_fn is not None:
        batch.use_step(step_fn(batch.stepper))
    requests: dict[int, BatchRequest] = {}

    def finished(rid: int, received: float, request: BatchRequest,
                 result: list[Completion] | BaseException) -> None:
        requests.pop(rid, None)
        outbox.done(rid, received, request, result)

    while True:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            break
        if message[0] == "submit":
            _, rid, prompt, config, prefixes, guards, streamed, cancelled = message
            request = BatchRequest(prompt, config, on_done=lambda r: None, prefixes=prefixes,
                                   guards=guards)
            request.on_done = _bind(finished, rid, time.perf_counter(), request)
            if streamed:
                request.on_text = _bind(outbox.text, rid)
            requests[rid] = request
            if cancelled:
                request.cancel()
            batch.submit(request)
        elif message[0] == "cancel":
            if (cancelled_request := requests.get(message[1])) is not None:
                cancelled_request.cancel()
        else:  # "close"
            break
    batch.close()  # every request left is cancelled and answered; its thread has ended
    with contextlib.suppress(OSError):  # else the server is gone
        outbox.flush(time.perf_counter())


def _bind(fn: Callable[..., None], *args: Any) -> Callable[..., None]:
    return lambda *more: fn(*args, *more)
