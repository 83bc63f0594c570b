"""The serving batch's requests and rows: the request type (:class:`BatchRequest`; batch.py's
generator takes it, and this module owns it, so the two import in one direction only); each
request's group of rows; their uniforms, drawn in blocks; the prompts that primed them, kept;
and their states, joined and selected whatever a layer's state is (a tensor, an ``(h, c)``
pair, the int8 stepper's)."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from weft.config import GenerationConfig
from weft.generation.copy_guard import CopyGuard
from weft.generation.generate import Completion, OnText, TextState
from weft.generation.sampling import MIN_TEMPERATURE, next_tokens
from weft.models.rnn_lm import select_state
from weft.tokenizers import Tokenizer

UNIFORM_BLOCK = 64  # steps of uniforms a generator draws at once (see Uniforms)
PRIMED_PROMPTS = 64  # prompts whose state and logits a batch keeps (see PrimedPrompts)

OnDone = Callable[[list[Completion] | BaseException], None]


@dataclass(eq=False)
class BatchRequest:
    """One request: its prompt (already cleaned), settings, and where its results go.

    ``on_text(i, chunk)`` and ``on_done(completions or error)`` are called from the batch's
    thread. ``cancel()`` may be called from any thread; the rows are freed at the next step,
    and ``on_cancel`` (set by whoever carries the request to its batch) is called once.
    """

    prompt: str
    config: GenerationConfig
    on_done: OnDone
    on_text: OnText | None = None
    prefixes: list[list[int]] | None = None  # per row: label token ids, after <bos>
    guards: list[CopyGuard] | None = None  # per row: max_copy as the text is written
    first_token_at: float | None = None  # time.perf_counter() when its first token was drawn
    on_cancel: Callable[[], None] | None = None
    # A flag, not a threading.Event: one is made per request on the event loop, and the batch
    # reads it every step; setting a bool is atomic, and the next step sees it.
    cancelled: bool = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.on_cancel is not None:
                self.on_cancel()


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


class Group:
    """The rows of one request in the batch."""

    def __init__(self, request: BatchRequest, tokenizer: Tokenizer, context: list[int],
                 device: torch.device) -> None:
        config = request.config
        self.request = request
        self.rows = config.num_return_sequences
        # A seeded request draws from its own generator; the others share the batch's (they
        # promise no repeatable text).
        self.uniforms = (Uniforms(torch.Generator(device=device).manual_seed(config.seed))
                         if config.seed is not None else None)
        guards = request.guards
        if guards is not None and len(guards) != self.rows:
            raise ValueError("give one copy guard per row")
        self.texts = [TextState(tokenizer, config.stop, context, guards[i] if guards else None,
                                lazy=request.on_text is None)
                      for i in range(self.rows)]
        self.steps = 0
        # Rows sample together when these agree (a request's own seed still draws its uniforms).
        self.sampling = (config.temperature, config.top_k, config.top_p,
                         config.repetition_penalty)

    def avoid_copies(self, tokens: torch.Tensor, values: list[int], first_row: int,
                     logits: torch.Tensor, seen: torch.Tensor | None, banned: torch.Tensor,
                     shared: Uniforms, eos: int | None) -> None:
        """Replace in ``tokens`` (drawn for the batch; ``values`` as a list) each of this
        group's tokens (from ``first_row``) that would complete a copy with one drawn again
        from its row of ``logits``, with the group's next uniform: the draws ``generate``
        makes (weft.generation.copy_guard)."""
        config = self.request.config
        for row, text in enumerate(self.texts, start=first_row):
            row_seen = (seen[row:row + 1] if seen is not None
                        and config.repetition_penalty != 1.0 else None)

            def draw(row_logits: torch.Tensor, row_seen: torch.Tensor | None = row_seen) -> int:
                uniforms = None
                if config.temperature >= MIN_TEMPERATURE:
                    uniforms = torch.tensor((self.uniforms or shared).take(1),
                                            device=row_logits.device)
                return int(next_tokens(row_logits, config, seen=row_seen, banned=banned,
                                       uniforms=uniforms)[0])

            chosen = text.redraw(values[row], logits[row:row + 1], draw, banned, eos)
            if chosen != values[row]:
                tokens[row] = values[row] = chosen

    @property
    def done(self) -> bool:
        return (self.steps >= self.request.config.max_new_tokens
                or all(t.done for t in self.texts))


def prime_key(prime: torch.Tensor) -> bytes:
    """A prompt's priming ids ``(rows, length)`` as a dictionary key."""
    return prime.size(0).to_bytes(4, "little") + prime.cpu().numpy().tobytes()


class PrimedPrompts:
    """The last logits and the model's state after the :data:`PRIMED_PROMPTS` latest prompts.

    They depend on the prompt alone, so a prompt sent again joins the batch without a
    forward pass: under load requests join one or two at a time, and priming a short prompt
    cost about as much as a whole step of the batch.
    """

    def __init__(self) -> None:
        self._kept: OrderedDict[bytes, tuple[torch.Tensor, Any]] = OrderedDict()

    def __contains__(self, key: bytes) -> bool:
        return key in self._kept

    def get(self, key: bytes) -> tuple[torch.Tensor, Any]:
        self._kept.move_to_end(key)
        return self._kept[key]

    def keep(self, prime: torch.Tensor, first: int, last_logits: torch.Tensor,
             module_state: Any) -> None:
        """Keep what priming ``prime`` gave: rows ``first`` on of a pass's ``last_logits``
        and ``module_state``."""
        key = prime_key(prime)
        if key in self._kept:
            return
        index = torch.arange(first, first + prime.size(0), device=last_logits.device)
        self._kept[key] = (last_logits.index_select(0, index),
                           select_state(module_state, index))
        if len(self._kept) > PRIMED_PROMPTS:
            self._kept.popitem(last=False)


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
