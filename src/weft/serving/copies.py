"""The copy meter and ``max_copy`` for both HTTP APIs (``/api/generate``, ``/v1/completions``).

A streamed request is bounded as it is written: its rows carry copy guards into the shared
batch (:mod:`weft.generation.copy_guard`). An unstreamed one is generated, measured, and its
texts over the limit generated again through the shared batch with new seeds, as
:func:`~weft.generation.samples.bound_copies` does for ``weft generate``. Measuring reads the
memory-mapped index, so it runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.concurrency import run_in_threadpool

from weft.config import GenerationConfig
from weft.generation import Completion
from weft.generation.copy_guard import CopyGuard
from weft.generation.samples import (
    Sample,
    bound_copies,
    check_max_copy,
    note_guarded,
    retry_seed,
    stream_guards,
)

# Generates rows (of a request) again, for their ``tries``-th time.
Again = Callable[[list[int], int], Coroutine[Any, Any, list[Completion]]]


class CopyCheck:
    """What a request asked of the copy meter (``copy_meter``, ``max_copy``) and the run's
    index to answer it. A run without an index is refused ``max_copy`` (a WeftError)."""

    def __init__(self, model: Any, copy_meter: bool, max_copy: int | None) -> None:
        check_max_copy(max_copy, model.copy_index)
        self.reported = copy_meter or max_copy is not None
        self.index = model.copy_index if self.reported else None
        self.max_copy = max_copy

    @property
    def bounded(self) -> bool:
        return self.max_copy is not None

    def guards(self, rows: int) -> list[CopyGuard] | None:
        """For a streamed job of ``rows`` rows: one guard per row under ``max_copy``."""
        return stream_guards(self.index, self.max_copy, rows)

    async def apply(self, samples: list[Sample], guards: list[CopyGuard] | None = None,
                    again: Again | None = None) -> None:
        """Measure ``samples`` if asked; under ``max_copy`` mark those their ``guards`` cut
        (streamed), or bound the others, generating them again through ``again``."""
        if self.index is None:
            return
        if guards is not None:
            note_guarded(samples, guards)
        if self.max_copy is None or guards is not None or again is None:
            await run_in_threadpool(self._measure, samples)
            return
        loop = asyncio.get_running_loop()

        def again_here(rows: list[int], tries: int) -> list[Completion]:  # in a worker thread
            return asyncio.run_coroutine_threadsafe(again(rows, tries), loop).result()

        await run_in_threadpool(self._bound, samples, again_here)

    def _measure(self, samples: list[Sample]) -> None:
        assert self.index is not None
        for sample in samples:
            sample.longest_copy = self.index.longest_copy(sample.text)

    def _bound(self, samples: list[Sample],
               again: Callable[[list[int], int], list[Completion]]) -> None:
        assert self.index is not None and self.max_copy is not None
        self._measure(samples)
        bound_copies(samples, self.index, self.max_copy, again)

    def extras(self, sample: Sample) -> dict[str, Any]:
        """The copy fields of one text in a response, as asked for."""
        fields: dict[str, Any] = {}
        if self.reported:
            copy = sample.longest_copy
            fields["longest_copy"] = copy.to_dict() if copy is not None else None
        if self.bounded:
            fields.update(tries=sample.tries, cut=sample.cut)
        return fields


def generate_again(server: Any, model: Any, prompt: str, config: GenerationConfig,
                   prefixes: list[list[int]] | None,
                   is_disconnected: Callable[[], Awaitable[bool]]) -> Again:
    """How a request's rows are generated again: the same prompt, settings and labels, the
    ``tries``-th seed, through the shared batch."""

    async def again(rows: list[int], tries: int) -> list[Completion]:
        retry = dataclasses.replace(config, num_return_sequences=len(rows),
                                    seed=retry_seed(config.seed or 0, tries))
        job = await server.generations.start(
            model, prompt, retry, prefixes=None if prefixes is None
            else [prefixes[i] for i in rows])
        return await server.generations.finish(job, is_disconnected)

    return again
