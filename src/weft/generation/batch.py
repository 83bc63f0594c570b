"""One running batch shared by many generation requests (what ``weft serve`` generates with).

A recurrent model's state has a fixed size, so a request can join a running batch at any step
and leave it at any step: its rows are a slice of the batched state. One thread steps the
batch: each step feeds every row's last token through the stepper once, then samples each
request's rows with that request's own settings, seed, stop strings and length. A request
joins at the next step (its prompt primes its rows first) and leaves as soon as it is done or
cancelled, freeing its rows for the next step.

A request with ``num_return_sequences`` = n is n rows sharing one seeded generator, sampled as
:func:`weft.generation.generate` samples them: the same draws from the same generator, and
:func:`~weft.generation.sampling.next_tokens` picks a row's token from that row's logits and
uniform alone. So a seeded request gives the same text alone, in a batch, or from
``weft generate`` (up to the last bits of the batched matrix products, which may differ from
a single row's; a flipped draw needs a uniform within about 1e-7 of a boundary).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from weft.config import GenerationConfig
from weft.generation.batch_rows import (
    BatchRequest,
    Group,
    PrimedPrompts,
    Uniforms,
    cat_layer,
    prime_key,
    select_layer,
)
from weft.generation.generate import Completion, prime_rows
from weft.generation.plan import choose_plan
from weft.generation.quantized import Int8Stepper
from weft.generation.sampling import MIN_TEMPERATURE, next_tokens
from weft.generation.stepper import RecurrentStepper
from weft.models.rnn_lm import RNNLanguageModel, select_state
from weft.tokenizers import Tokenizer

log = logging.getLogger("weft")

__all__ = ["BatchRequest", "BatchedGenerator"]  # the request type is batch_rows.py's

class BatchedGenerator:
    """Steps one batch of rows for every request submitted to it, in a thread of its own.

    ``on_step(tokens)`` is called in the batch's thread after each round of it (requests
    joined, then one step sampled and its text handed out, before the step's forward pass)
    with the tokens it drew, 0 when no step ran.
    """

    def __init__(self, model: RNNLanguageModel, tokenizer: Tokenizer, *, quantize: str = "auto",
                 on_step: Callable[[int], None] | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = model.device
        # The process's threads are the server's to set; the plan picks float32 or int8 (and
        # which int8 product) for this CPU, measured at 1 row like `weft generate`.
        plan = choose_plan(model, GenerationConfig(quantize=quantize),
                           threads=torch.get_num_threads())
        self.stepper = (Int8Stepper(model, plan.kernel or "int_mm") if plan.quantize == "int8"
                        else RecurrentStepper(model))
        self._step: Callable[..., Any] = self.stepper.step
        self.on_step = on_step
        self._shared = Uniforms(torch.Generator(device=self.device).manual_seed(
            int.from_bytes(os.urandom(4), "little")))
        self.banned = torch.zeros(model.config.vocab_size, dtype=torch.bool, device=self.device)
        self.banned[tokenizer.never_generate] = True
        self._pending: list[BatchRequest] = []
        self._closed = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        # The batch, touched only by its thread: groups in row order, and per row the logits
        # of its next token, the recurrent state, and the tokens seen (repetition penalty).
        self._groups: list[Group] = []
        self._primed = PrimedPrompts()
        self._logits = torch.zeros(0, model.config.vocab_size, device=self.device)
        self._states: list[Any] = []
        # Only while a request has a repetition penalty (rows without one never read theirs).
        self._seen: torch.Tensor | None = None
        self._penalized = 0  # groups with a repetition penalty
        self._classes: list[tuple[list[Group], torch.Tensor | None]] | None = None
        self.rows = 0  # rows in the batch now (read from other threads for metrics)

    # -- from any thread ---------------------------------------------------------------------
    def use_step(self, step: Callable[..., Any]) -> None:
        """Step with ``step`` (the stepper's ``step`` compiled, for ``weft serve --compile``)."""
        self._step = step

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, request: BatchRequest) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("this batched generator is closed")
            self._pending.append(request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="weft-batch",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        """Cancel everything and wait (a step at most) for the thread to end: a thread left
        inside PyTorch when the process exits can abort it."""
        with self._wake:
            self._closed = True
            for request in self._pending:
                request.cancel()
            for group in self._groups:
                group.request.cancel()
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    # -- the batch's thread --------------------------------------------------------------------
    def _run(self) -> None:
        with torch.no_grad():
            while True:
                with self._wake:
                    while not self._pending and not self._groups and not self._closed:
                        self._wake.wait()
                    joining, self._pending = self._pending, []
                    if self._closed and not self._groups and not joining:
                        return
                if joining:
                    self._join(joining)
                    if self._closed:  # closed while they joined: close() saw them nowhere
                        for group in self._groups:
                            group.request.cancel()
                try:
                    tokens, keep = self._advance() if self._groups else (None, [])
                    if self.on_step is not None:
                        self.on_step(0 if tokens is None else tokens.size(0))
                    if tokens is not None and keep:
                        self._feed(tokens, keep)
                except Exception as exc:  # e.g. out of memory: every request in it fails
                    log.exception("the generation batch failed")
                    for group in self._groups:
                        group.request.on_done(exc)
                    self._keep([])

    def _join(self, requests: list[BatchRequest]) -> None:
        """Prime the requests' rows with their prompts and add them to the batch.

        A prompt primed lately is not primed again (:class:`PrimedPrompts`). The others prime
        together per length, in one forward pass: under load many requests join at once, and
        a pass per request cost more than the steps themselves."""
        by_length: dict[int, list[tuple[BatchRequest, torch.Tensor]]] = {}
        again: dict[bytes, list[tuple[BatchRequest, torch.Tensor]]] = {}
        for request in requests:
            try:
                prime = self._prime_ids(request)
            except Exception as exc:
                request.on_done(exc)
                continue
            if prime is None:
                continue
            key = prime_key(prime)
            if key in self._primed:
                again.setdefault(key, []).append((request, prime))
            else:
                by_length.setdefault(prime.size(1), []).append((request, prime))
        for key, same_prompt in again.items():
            last_logits, module_state = self._primed.get(key)
            self._admit(same_prompt, [0] * len(same_prompt), same_prompt[0][1], last_logits,
                        module_state)
        for same_length in by_length.values():
            try:
                primes = torch.cat([p for _, p in same_length])
                logits, _, module_state = self.model(primes)
            except Exception as exc:  # e.g. out of memory: these requests fail, not the batch
                for request, _ in same_length:
                    request.on_done(exc)
                continue
            firsts = list(itertools.accumulate((p.size(0) for _, p in same_length),
                                               initial=0))[:-1]
            last_logits = logits[:, -1, :]
            for (_, prime), first in zip(same_length, firsts, strict=True):
                self._primed.keep(prime, first, last_logits, module_state)
            self._admit(same_length, firsts, primes, last_logits, module_state)

    def _admit(self, primed: list[tuple[BatchRequest, torch.Tensor]], firsts: list[int],
               primes: torch.Tensor, last_logits: torch.Tensor, module_state: Any) -> None:
        """Add primed requests to the batch; ``firsts[i]`` is the first row of request i's
        prompt in ``primes``, ``last_logits`` and ``module_state``."""
        groups: list[Group] = []
        rows: list[int] = []  # per new batch row, its primed row
        for (request, prime), first in zip(primed, firsts, strict=True):
            n = request.config.num_return_sequences
            try:
                # The prompt decides the first token's spacing and open quotes.
                groups.append(Group(request, self.tokenizer, prime[0].tolist(), self.device))
            except Exception as exc:
                request.on_done(exc)
            else:
                # One primed row serves every sequence, unless their labels differ.
                rows.extend(range(first, first + n) if prime.size(0) > 1 else [first] * n)
        if groups:
            self._add(groups, primes, last_logits, module_state, rows)

    def _prime_ids(self, request: BatchRequest) -> torch.Tensor | None:
        """The request's priming ids ``(1 or n, length)``, or None when it is answered at once
        (cancelled, or asked for no tokens)."""
        config = request.config
        config.validate()
        if request.cancelled or config.max_new_tokens == 0:
            texts = [Completion("", "cancelled" if request.cancelled else "length", 0)]
            request.on_done(texts * config.num_return_sequences)
            return None
        return torch.as_tensor(prime_rows(self.tokenizer, request.prompt, request.prefixes,
                                          config.num_return_sequences), device=self.device)

    def _add(self, groups: list[Group], primes: torch.Tensor, last_logits: torch.Tensor,
             module_state: Any, rows: list[int]) -> None:
        """Add primed requests' rows to the batch, all at once: ``rows`` gives, per new row,
        its row of ``primes``, ``last_logits`` and ``module_state``."""
        try:
            index = torch.tensor(rows, dtype=torch.long, device=self.device)
            state = self.stepper.from_module_state(select_state(module_state, index))
            penalized = sum(group.sampling[3] != 1.0 for group in groups)
            seen = None
            if penalized or self._seen is not None:
                seen = self._seen_rows(len(rows))
                seen[torch.arange(len(rows), device=self.device)[:, None],
                     primes.index_select(0, index)] = True
                seen = torch.cat([self._seen_rows(self._logits.size(0))
                                  if self._seen is None else self._seen, seen])
        except Exception as exc:
            for group in groups:
                group.request.on_done(exc)
            return
        self._groups.extend(groups)
        self._classes = None
        self._penalized += penalized
        self._seen = seen
        self._logits = torch.cat([self._logits, last_logits.float().index_select(0, index)])
        self._states = state if not self._states else [
            cat_layer(old, new) for old, new in zip(self._states, state, strict=True)]
        self.rows = self._logits.size(0)

    def _seen_rows(self, count: int) -> torch.Tensor:
        return torch.zeros(count, self.model.config.vocab_size, dtype=torch.bool,
                           device=self.device)

    def _advance(self) -> tuple[torch.Tensor, list[int]]:
        """Sample every row's next token, hand out text and retire finished requests: the
        tokens drawn, and the rows that go on."""
        tokens = self._sample()
        values = tokens.tolist()
        eos = self.tokenizer.eos_id
        keep: list[int] = []
        row = 0
        now = time.perf_counter()
        for group in self._groups:
            request = group.request
            if request.first_token_at is None:
                request.first_token_at = now
            group.steps += 1
            writing = False
            if request.guards is not None:  # max_copy: a token that would copy is drawn again
                group.avoid_copies(tokens, values, row, self._logits, self._seen, self.banned,
                                   self._shared, eos)
            for i, text in enumerate(group.texts):
                if not text.done:
                    text.push(values[row + i], eos)
                    if request.on_text is not None and (chunk := text.flush(final=False)):
                        request.on_text(i, chunk)
                    writing = writing or not text.done
            if not writing or group.steps >= request.config.max_new_tokens or request.cancelled:
                self._finish(group)
            else:
                keep.extend(range(row, row + group.rows))
            row += group.rows
        if self._seen is not None:
            self._seen[torch.arange(tokens.size(0), device=self.device), tokens] = True
        self._keep(keep)
        return tokens, keep

    def _feed(self, tokens: torch.Tensor, keep: list[int]) -> None:
        """The kept rows' tokens through the model once: the next step's logits and state."""
        self._logits, self._states = self._step(tokens[keep] if len(keep) < tokens.size(0)
                                                else tokens, self._states)

    def _sample(self) -> torch.Tensor:
        """One token per row: rows with the same settings in one call, each request's
        uniforms from its own generator (drawn in row order, as ``generate`` draws them)."""
        if self._classes is None:  # the batch changed since the last step
            self._classes = self._sampling_classes()
        if len(self._classes) == 1:
            return self._sample_rows(*self._classes[0])
        tokens = torch.empty(self._logits.size(0), dtype=torch.long, device=self.device)
        for groups, index in self._classes:
            tokens[index] = self._sample_rows(groups, index)
        return tokens

    def _sampling_classes(self) -> list[tuple[list[Group], torch.Tensor | None]]:
        """The groups of each sampling setting, and their rows (None: all of them)."""
        classes: dict[tuple[float, int, float, float], list[Group]] = {}
        for group in self._groups:
            classes.setdefault(group.sampling, []).append(group)
        if len(classes) == 1:
            return [(self._groups, None)]
        starts, row = {}, 0
        for group in self._groups:
            starts[id(group)] = row
            row += group.rows
        return [(groups, torch.tensor([starts[id(g)] + i for g in groups for i in range(g.rows)],
                                      device=self.device))
                for groups in classes.values()]

    def _sample_rows(self, groups: list[Group], index: torch.Tensor | None) -> torch.Tensor:
        config = groups[0].request.config
        logits = self._logits if index is None else self._logits.index_select(0, index)
        seen = None
        if config.repetition_penalty != 1.0:
            assert self._seen is not None  # kept while a group has a penalty
            seen = self._seen if index is None else self._seen.index_select(0, index)
        uniforms = None
        if config.temperature >= MIN_TEMPERATURE:
            values: list[float] = []
            for group in groups:
                values += (group.uniforms or self._shared).take(group.rows)
            uniforms = torch.tensor(values, device=self.device)
        return next_tokens(logits, config, seen=seen, banned=self.banned, uniforms=uniforms)

    def _finish(self, group: Group) -> None:
        request = group.request
        cancelled = request.cancelled and not group.done
        for i, text in enumerate(group.texts):
            text.finish()  # text the decoder held back (a partial character) is due
            if request.on_text is not None and not cancelled and (
                    chunk := text.flush(final=True)):
                request.on_text(i, chunk)
        request.on_done([text.completion(cancelled) for text in group.texts])

    def _keep(self, rows: list[int]) -> None:
        """Keep only these rows (and the groups they belong to) in the batch."""
        if len(rows) == self._logits.size(0):
            return  # no request left
        kept = set(rows)
        row, groups = 0, []
        for group in self._groups:
            if row in kept:
                groups.append(group)
            row += group.rows
        self._groups = groups
        self._classes = None
        self._penalized = sum(group.sampling[3] != 1.0 for group in groups)
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self._logits = self._logits.index_select(0, index)
        if self._seen is not None:
            self._seen = self._seen.index_select(0, index) if self._penalized else None
        self._states = [select_layer(s, index) for s in self._states] if rows else []
        self.rows = len(rows)
