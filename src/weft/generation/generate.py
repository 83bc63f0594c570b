"""Generating text from a recurrent language model.

The prompt primes the recurrent state in one forward pass; generation then feeds one token at
a time and carries the state forward, never re-reading the context. Several sequences are
generated as one batch. Text is decoded incrementally so that it can be streamed, and stop
strings are held back until they are known not to match.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from weft.config import GenerationConfig
from weft.device import cpu_threads
from weft.errors import WeftError
from weft.generation.compiled import ChunkedSampler
from weft.generation.copy_guard import CopyGuard, redraw
from weft.generation.plan import GenerationPlan, choose_plan
from weft.generation.quantized import Int8Stepper
from weft.generation.sampling import next_tokens
from weft.generation.stepper import RecurrentStepper
from weft.models.rnn_lm import RNNLanguageModel, State, select_state
from weft.tokenizers import EncodeReport, Tokenizer

log = logging.getLogger("weft")

OnText = Callable[[int, str], None]
STOP, LENGTH, CANCELLED = "stop", "length", "cancelled"  # why a text ended


class Completion(str):
    """A generated text (a ``str``, so it is used as one) that also says why it ended.

    ``finish_reason`` is ``"stop"`` (the end token or a stop string), ``"length"`` (the
    ``max_new_tokens`` limit) or ``"cancelled"`` (stopped by its caller); ``tokens`` counts
    the tokens generated for it, a stop string's included.
    """

    finish_reason: str
    tokens: int

    def __new__(cls, text: str, finish_reason: str, tokens: int) -> Completion:
        completion = super().__new__(cls, text)
        completion.finish_reason = finish_reason
        completion.tokens = tokens
        return completion


class TextState:
    """One sequence's text so far, with stop-string handling and streaming.

    Text that may be the start of a stop string is held back from :meth:`flush` until it is
    known not to be, so what is streamed is never taken back. A ``guard`` (``max_copy``) has
    :meth:`redraw` replace a token that would complete a copy before it is kept. ``ending`` is
    what a stop string cut off: the stop string and any text after it in its token.

    ``lazy``: nothing reads the text before it ends (no :meth:`flush`), so without stop
    strings or a guard the tokens are decoded only then, all at once (the same text: the
    decoder's pieces join to the whole decode). The serving batch's unstreamed requests are.
    """

    def __init__(
        self, tokenizer: Tokenizer, stops: tuple[str, ...], context: Sequence[int] | None = None,
        guard: CopyGuard | None = None, lazy: bool = False,
    ) -> None:
        self.decoder = tokenizer.stream_decoder(context or ())
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.guard = guard
        self.text = ""
        self.ending = ""
        self.emitted = 0
        self.done = False
        self.stopped = False  # by the end token, a stop string or the guard
        self.tokens = 0
        self.lazy = lazy and not stops and guard is None
        self._undecoded: list[int] = []

    def push(self, token: int, eos: int | None) -> None:
        """Take the next token: the end token or a stop string ends the text."""
        self.tokens += 1
        if token == eos:
            self.stopped = True
            self.finish()
        elif self.lazy:
            self._undecoded.append(token)
        else:
            self._add(self.decoder.push(token))

    def would_copy(self, token: int, eos: int | None) -> bool:
        """Whether keeping ``token`` would complete a copy that the guard forbids."""
        if self.guard is None or self.done or token == eos:
            return False
        delta = self.decoder.peek(token)
        return bool(delta) and self.guard.completes(delta)

    def redraw(self, token: int, logits: torch.Tensor, draw: Callable[[torch.Tensor], int],
               banned: torch.Tensor | None, eos: int | None) -> int:
        """``token``, or one drawn again from ``logits`` (this row's) when it would complete a
        copy (:func:`~weft.generation.copy_guard.redraw`)."""
        if self.guard is None or self.done:
            return token
        return redraw(token, logits, lambda t: self.would_copy(t, eos), draw, banned)

    def finish(self) -> None:
        """The end of the sequence: text the decoder held back (a partial character) is due."""
        if not self.done:
            if self._undecoded:
                push = self.decoder.push
                self._add("".join([push(token) for token in self._undecoded]))
                self._undecoded = []
            self._add(self.decoder.finish())
        self.done = True

    def _add(self, delta: str) -> None:
        if not delta:
            return
        search_from = max(0, len(self.text) - self.hold)
        before = len(self.text)
        self.text += delta
        for stop in self.stops:
            at = self.text.find(stop, search_from)
            if at >= 0:
                self.ending = self.text[at:] + self.ending
                self.text = self.text[:at]
                self.done = self.stopped = True
        if self.guard is not None and len(self.text) > before:
            kept = self.guard.take(self.text[before:])
            if kept is not None:
                self.text = self.text[:before + kept]
                self.ending = ""  # the copy's end is no stop string
                self.done = self.stopped = True

    def completion(self, cancelled: bool) -> Completion:
        reason = STOP if self.stopped else CANCELLED if cancelled else LENGTH
        return Completion(self.text, reason, self.tokens)

    def flush(self, final: bool) -> str:
        end = len(self.text) if (final or self.done) else max(self.emitted,
                                                              len(self.text) - self.hold)
        chunk = self.text[self.emitted : end]
        self.emitted = end
        return chunk


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> np.ndarray:
    """Prompt ids, warning about (never failing on) text outside the vocabulary."""
    report = EncodeReport()
    ids = tokenizer.encode(prompt, report)
    if report.unknown:
        log.warning("the prompt has text the model never saw, replaced by <unk>: %s",
                    report.describe())
    if report.unseen:
        log.warning("the prompt has characters the model never saw in training (kept, as "
                    "their bytes): %s", report.describe(pieces=report.unseen))
    return ids


def start_ids(tokenizer: Tokenizer, prompt: str) -> np.ndarray:
    """The ids that prime generation: BOS (when the model has one) then the prompt."""
    ids = encode_prompt(tokenizer, prompt) if prompt else np.zeros(0, dtype=np.int64)
    if tokenizer.bos_id is not None:
        return np.concatenate([[tokenizer.bos_id], ids]).astype(np.int64)
    if len(ids) == 0:
        # A stream model with no prompt starts as if after a line break.
        newline = tokenizer.encode("\n")
        ids = newline[-1:] if len(newline) else np.array([0])
    return ids.astype(np.int64)


def prime_rows(tokenizer: Tokenizer, prompt: str,
               prefixes: Sequence[Sequence[int]] | None, n: int) -> np.ndarray:
    """The priming ids, ``(1, length)`` or, when sequences have different ``prefixes`` (label
    tokens, placed right after ``<bos>``), ``(n, length)``."""
    ids = start_ids(tokenizer, prompt)
    if not prefixes:
        return ids[None, :]
    if tokenizer.bos_id is None:
        raise WeftError("label tokens follow <bos>: this model has none")
    if len(prefixes) != n or len({len(p) for p in prefixes}) != 1:
        raise WeftError("give one label prefix per sequence, all of one length")
    rows = np.array([[ids[0], *prefix, *ids[1:]] for prefix in prefixes], dtype=np.int64)
    return rows[:1] if (rows == rows[0]).all() else rows


def generate(
    model: RNNLanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    config: GenerationConfig,
    *,
    on_text: OnText | None = None,
    should_stop: Callable[[], bool] | None = None,
    reference: bool = False,
    threads: int | None = None,
    chunked: bool | None = None,
    prefixes: Sequence[Sequence[int]] | None = None,
    plan: GenerationPlan | None = None,
    guards: Sequence[CopyGuard] | None = None,
) -> list[Completion]:
    """Continuations of ``prompt`` (without the prompt), one per requested sequence, each a
    :class:`Completion` (a ``str`` with its ``finish_reason``).

    ``on_text(i, chunk)`` receives text as it is produced; ``should_stop()`` is polled between
    tokens to cancel. ``reference=True`` steps through ``nn.LSTM`` itself instead of the fused
    stepper (slower; kept to check the fast path against). ``threads`` overrides the CPU
    thread choice. ``chunked`` overrides :func:`chooses_on_device` (None: its choice).
    ``prefixes`` are token ids (labels) each sequence has after ``<bos>``. ``guards`` (one per
    sequence) keep a text from copying their limit from the corpus: a token that would is drawn
    again (tokens are then chosen on the host, one step at a time).
    ``plan`` is the path to take (:func:`~weft.generation.plan.choose_plan` of ``config`` and
    ``threads`` when None: float32 or int8, threads, compiled or not, for this machine).
    """
    if plan is None:
        plan = (GenerationPlan("none", None, False, threads) if reference
                else choose_plan(model, config, threads))
    with torch.no_grad(), cpu_threads(plan.threads):
        return _generate(model, tokenizer, prompt, config, on_text, should_stop, reference,
                         chooses_on_device(model.device) if chunked is None
                         else chunked, prefixes, plan, guards)


def chooses_on_device(device: torch.device) -> bool:
    """Whether tokens are chosen on the device, :data:`CHUNK_TOKENS` steps at a time, and copied
    to the host once per chunk. On a GPU, copying each step's tokens to the host waits for the
    device to finish that step, so the host cannot queue the next one: per-token stepping runs
    at the speed of the round trip. On a CPU there is no such wait, and per-token sampling
    does less work (no chunk of draws computed past a stop)."""
    return device.type != "cpu"


def _generate(
    model: RNNLanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    config: GenerationConfig,
    on_text: OnText | None,
    should_stop: Callable[[], bool] | None,
    reference: bool,
    chunked: bool,
    prefixes: Sequence[Sequence[int]] | None,
    plan: GenerationPlan,
    guards: Sequence[CopyGuard] | None,
) -> list[Completion]:
    config.validate()
    device = model.device
    if config.compile and device.type != "cpu":
        raise WeftError("--compile is for generating on a CPU (where it is measured); "
                        "on a GPU leave it off")
    was_training = model.training
    model.eval()
    n = config.num_return_sequences
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(4), "little")
    generator = torch.Generator(device=device).manual_seed(seed)

    prime = torch.as_tensor(prime_rows(tokenizer, prompt, prefixes, n), device=device)
    logits, _, module_state = model(prime)
    last = logits[:, -1, :].expand(n, -1)
    # One primed row serves every sequence, unless their labels differ.
    rows = torch.arange(n, device=device) if prime.size(0) > 1 else torch.zeros(
        n, dtype=torch.long, device=device)
    module_state = select_state(module_state, rows)
    stepper: RecurrentStepper | Int8Stepper | None = None
    if not reference:
        stepper = (Int8Stepper(model, plan.kernel or "int_mm") if plan.quantize == "int8"
                   else RecurrentStepper(model))

    vocab = model.config.vocab_size
    banned = torch.zeros(vocab, dtype=torch.bool, device=device)
    banned[tokenizer.never_generate] = True
    seen = None
    if config.repetition_penalty != 1.0:
        seen = torch.zeros(n, vocab, dtype=torch.bool, device=device)
        seen[torch.arange(n, device=device)[:, None], prime.expand(n, -1)] = True
    eos = tokenizer.eos_id
    context = prime[0].tolist()  # the prompt decides the first token's spacing and open quotes
    if guards is not None and len(guards) != n:
        raise WeftError("give one copy guard per sequence")
    texts = [TextState(tokenizer, config.stop, context, guards[i] if guards else None)
             for i in range(n)]
    active = n
    cancelled = False

    vet: Vet | None = None
    if guards is not None:
        def vet(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            """Tokens that would complete a copy, drawn again (see copy_guard.py)."""
            values = tokens.tolist()
            for i, text in enumerate(texts):
                def draw(row: torch.Tensor, i: int = i) -> int:
                    return int(next_tokens(row, config, banned=banned, generator=generator,
                                           seen=None if seen is None else seen[i:i + 1])[0])
                chosen = text.redraw(values[i], logits[i:i + 1], draw, banned, eos)
                if chosen != values[i]:
                    tokens[i] = chosen
            return tokens

    first = next_tokens(last, config, seen=seen, banned=banned, generator=generator)
    if vet is not None:
        first = vet(last, first)
    if seen is not None:
        seen[torch.arange(n, device=device), first] = True
    if stepper is None:
        steps = _sampled_steps(_module_advance(model, module_state), first, config, seen,
                               banned, generator, vet)
    elif (plan.compile or chunked) and vet is None:
        sampler = ChunkedSampler(stepper, config, banned, generator, compile=plan.compile)
        steps = _chunked_steps(sampler, stepper.from_module_state(module_state), first, seen)
    else:
        advance = _stepper_advance(stepper, stepper.from_module_state(module_state))
        steps = _sampled_steps(advance, first, config, seen, banned, generator, vet)
    for tokens in itertools.islice(steps, config.max_new_tokens):
        for i, token in enumerate(tokens):
            text = texts[i]
            if text.done:
                continue
            text.push(token, eos)
            if text.done:
                active -= 1
            if on_text is not None:
                chunk = text.flush(final=False)
                if chunk:
                    on_text(i, chunk)
        if active == 0:
            break
        if should_stop is not None and should_stop():
            cancelled = True
            break
    for text in texts:
        text.finish()
    if on_text is not None:
        for i, text in enumerate(texts):
            chunk = text.flush(final=True)
            if chunk:
                on_text(i, chunk)
    model.train(was_training)
    return [t.completion(cancelled) for t in texts]


# Each of these yields the tokens of one step (one per sequence) and computes the next step only
# when asked for it, so no work is done after the last token is taken.
Steps = Iterator[list[int]]
Advance = Callable[[torch.Tensor], torch.Tensor]  # feeds tokens (batch,), gives next logits
Vet = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, drawn) -> tokens kept


def _sampled_steps(advance: Advance, tokens: torch.Tensor, config: GenerationConfig,
                   seen: torch.Tensor | None, banned: torch.Tensor,
                   generator: torch.Generator, vet: Vet | None = None) -> Steps:
    rows = torch.arange(tokens.size(0), device=tokens.device)
    while True:
        yield tokens.tolist()
        logits = advance(tokens)
        tokens = next_tokens(logits, config, seen=seen, banned=banned, generator=generator)
        if vet is not None:
            tokens = vet(logits, tokens)
        if seen is not None:
            seen[rows, tokens] = True


def _chunked_steps(sampler: ChunkedSampler, states: list[Any], tokens: torch.Tensor,
                   seen: torch.Tensor | None) -> Steps:
    yield tokens.tolist()
    while True:
        block, states, seen = sampler.next_chunk(tokens, states, seen)
        yield from block.t().tolist()
        tokens = block[:, -1]


def _stepper_advance(stepper: RecurrentStepper | Int8Stepper, states: list[Any]) -> Advance:
    def advance(tokens: torch.Tensor) -> torch.Tensor:
        nonlocal states
        logits, states = stepper.step(tokens, states)
        return logits

    return advance


def _module_advance(model: RNNLanguageModel, state: State) -> Advance:
    """Through ``nn.LSTM`` itself: the reference the steppers are checked against."""

    def advance(tokens: torch.Tensor) -> torch.Tensor:
        nonlocal state
        logits, _, state = model(tokens[:, None], state)
        return logits[:, -1, :]

    return advance
