"""The serving batch's rows: their uniforms, drawn in blocks; the key of the prompt that primed
them; and their states, joined and selected whatever a layer's state is (a tensor, an
``(h, c)`` pair, the int8 stepper's)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

UNIFORM_BLOCK = 64  # steps of uniforms a generator draws at once (see Uniforms)


class Uniforms:
    """The uniforms of one generator, drawn :data:`UNIFORM_BLOCK` steps at a time.

    A CPU generator gives the same numbers in the same order drawn at once or one step at a
    time, so a seeded request still writes the text of ``generate``; and a draw per request
    per step (every served request is seeded: labels are drawn from its seed) cost more than
    sampling the whole batch. Other devices' generators depend on how numbers are drawn:
    there each step draws its own.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.block = UNIFORM_BLOCK if generator.device.type == "cpu" else 1
        self._values: list[float] = []
        self._at = 0

    def take(self, count: int) -> list[float]:
        """The next ``count`` uniforms (float32 values)."""
        if self._at + count > len(self._values):
            self._values = torch.rand(count * self.block, generator=self.generator,
                                      device=self.generator.device).tolist()
            self._at = 0
        self._at += count
        return self._values[self._at - count : self._at]


def prime_key(prime: torch.Tensor) -> bytes:
    """A prompt's priming ids ``(rows, length)`` as a dictionary key."""
    return prime.size(0).to_bytes(4, "little") + prime.cpu().numpy().tobytes()


def _map_tensors(fn: Callable[..., torch.Tensor], *states: Any) -> Any:
    """Apply ``fn`` to the tensors of one layer's state (a tensor, an ``(h, c)`` tuple, or the
    int8 stepper's dataclass), field by field across ``states``."""
    first = states[0]
    if first is None or isinstance(first, torch.Tensor):
        return None if first is None else fn(*states)
    if isinstance(first, tuple):
        return tuple(_map_tensors(fn, *parts) for parts in zip(*states, strict=True))
    return type(first)(**{f.name: _map_tensors(fn, *(getattr(s, f.name) for s in states))
                          for f in dataclasses.fields(first)})


def cat_layer(old: Any, new: Any) -> Any:
    return _map_tensors(lambda a, b: torch.cat([a, b]), old, new)


def select_layer(state: Any, index: torch.Tensor) -> Any:
    return _map_tensors(lambda t: t.index_select(0, index), state)
