"""Generation in compiled chunks (``--compile``): one call of generated C++ per 8 tokens.

At batch 1 a step is a few small matrix products and some twenty small ops around them, and in
eager PyTorch every op costs several microseconds of dispatch: more than its arithmetic. Here
``torch.compile`` (Inductor with its C++ wrapper) turns :data:`CHUNK_TOKENS` steps *and their
sampling* into one call whose elementwise work is fused into a few C++ loops; Python runs once
per chunk, not once per op.

The steps are the steppers' own ``step`` (float32 or int8, traced, not rewritten), and the
sampling is the same arithmetic as :func:`weft.generation.sampling.next_tokens`'s search of the
running sums: one uniform per row and step, drawn from the seeded generator before the chunk
(the very draws the uncompiled path makes). Sampling settings
enter as tensors, so a new temperature does not compile again; a new batch size or a setting
switched on or off does (after 8 such variants in one process, Dynamo runs new ones uncompiled).

What it costs: the first chunk compiles (30-55 s for a 2 x 512 LSTM on 2 cores with a cold
cache; Inductor keeps the result on disk, so later processes take a few seconds) and it needs
a C++ compiler. Without one, or if compiling fails, generation goes on uncompiled for the rest
of the process, with a warning. Tokens computed past a stop (at most a chunk's worth) are
discarded. Measured by ``benchmarks/generation_speed.py`` (docs/benchmarks.md); it is for the
CPU, and opt-in.

On a GPU the same chunks run uncompiled (``weft.generation.generate.chooses_on_device``): the
tokens are chosen on the device and copied to the host once per chunk, not once per token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from weft.config import GenerationConfig
from weft.generation.sampling import (
    MIN_TEMPERATURE,
    apply_repetition_penalty,
    finite_or_minus_inf,
    pick_by_running_sum,
)

log = logging.getLogger("weft")

# Tokens per compiled call. 2 x 512 int8 LSTM, 1 stream, 2 threads: 199 us/token at 4, 169 at
# 8, 178 at 16 (a longer unrolled chunk also compiles longer: 13 s, 20 s, 31 s).
CHUNK_TOKENS = 8


@dataclass(frozen=True)
class SamplingKnobs:
    """Sampling settings: switches (compiled in) and values (tensors, so new values reuse the
    compiled code)."""

    greedy: bool
    use_penalty: bool
    use_top_k: bool
    use_top_p: bool
    temperature: torch.Tensor
    penalty: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor

    @classmethod
    def from_config(cls, config: GenerationConfig, vocab: int,
                    device: torch.device) -> SamplingKnobs:
        def value(x: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            # Filled on the device: torch.tensor(x) would copy from the host, a sync on a GPU.
            return torch.full((), x, dtype=dtype, device=device)

        return cls(
            greedy=config.temperature < MIN_TEMPERATURE,
            use_penalty=config.repetition_penalty != 1.0,
            use_top_k=0 < config.top_k < vocab,
            use_top_p=config.top_p < 1.0,
            temperature=value(max(config.temperature, MIN_TEMPERATURE)),
            penalty=value(config.repetition_penalty),
            top_k=value(min(max(config.top_k, 1), vocab), torch.long),
            top_p=value(config.top_p),
        )


def sample(logits: torch.Tensor, uniforms: torch.Tensor, banned: torch.Tensor,
           seen: torch.Tensor | None, knobs: SamplingKnobs) -> torch.Tensor:
    """One token per row of ``logits`` ``(batch, vocab)``, given a uniform in [0, 1) per row.

    Branch-free, so that it compiles into the chunk: the same filters as ``next_tokens``, then
    the first token whose running probability sum exceeds ``uniform * total``. A row with no
    finite probability left takes its greedy choice, as in ``next_tokens``.
    """
    logits = logits.float().masked_fill(banned, float("-inf"))
    if knobs.use_penalty and seen is not None:
        logits = apply_repetition_penalty(logits, seen, knobs.penalty)
    logits = finite_or_minus_inf(logits)
    greedy = logits.argmax(dim=-1)
    if knobs.greedy:
        return greedy
    scaled = finite_or_minus_inf(logits / knobs.temperature)
    if knobs.use_top_k or knobs.use_top_p:
        ranked, order = torch.sort(scaled, descending=True, dim=-1)
        if knobs.use_top_k:  # ties with the k-th logit stay, as in filter_top_k
            kth = ranked.gather(-1, (knobs.top_k - 1).expand(ranked.size(0), 1))
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
            ranked = ranked.masked_fill(ranked < kth, float("-inf"))
        if knobs.use_top_p:  # as filter_top_p: drop a token once the mass before it reaches p
            probs = torch.softmax(ranked, dim=-1)
            drop_ranked = (probs.cumsum(dim=-1) - probs) >= knobs.top_p
            drop = torch.zeros_like(drop_ranked).scatter(-1, order, drop_ranked)
            scaled = scaled.masked_fill(drop, float("-inf"))
    cumulative = torch.softmax(scaled, dim=-1).cumsum(dim=-1)
    drawn = pick_by_running_sum(cumulative, uniforms)
    return torch.where(cumulative[:, -1] > 0, drawn, greedy)  # False for NaN totals too


def chunk(stepper: Any, tokens: torch.Tensor, states: list[Any], seen: torch.Tensor | None,
          uniforms: torch.Tensor, banned: torch.Tensor,
          knobs: SamplingKnobs) -> tuple[torch.Tensor, list[Any], torch.Tensor | None]:
    """Feed ``tokens`` and sample ``len(uniforms)`` more, one step each: ``(batch, chunk)``
    tokens, the state after feeding all but the last of them, and ``seen`` updated."""
    drawn = []
    for uniform in uniforms.unbind(0):
        logits, states = stepper.step(tokens, states)
        tokens = sample(logits, uniform, banned, seen, knobs)
        if seen is not None:
            seen = seen.scatter(1, tokens[:, None], True)
        drawn.append(tokens)
    return torch.stack(drawn, dim=1), states, seen


Chunk = Callable[..., tuple[torch.Tensor, list[Any], torch.Tensor | None]]
_compiled: Chunk | None = None
_compiling = threading.Lock()


def compiled_chunk() -> Chunk:
    """``chunk`` compiled once per process (its code is shared; Dynamo keys it by shapes and
    switches, so another model or a new stepper of the same shapes reuses it). Threads that
    ask at once get the same one."""
    global _compiled
    with _compiling:
        if _compiled is None:
            _compiled = torch.compile(chunk, dynamic=False, fullgraph=True,
                                      options={"cpp_wrapper": True})
        return _compiled


def compiled_step(stepper: Any) -> Callable[..., Any]:
    """``stepper.step`` compiled for any batch size (``weft serve --compile``: rows join and
    leave the shared batch at any step). It compiles on its first call, in the batch's one
    thread; if compiling fails, the batch goes on uncompiled (one warning)."""
    compiled = torch.compile(stepper.step, dynamic=True)
    failed = False

    def step(tokens: torch.Tensor, states: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        nonlocal failed
        if not failed:
            try:
                return compiled(tokens, states)
            except Exception as error:  # any compiler failure: go on uncompiled
                failed = True
                message = str(error).strip()
                log.warning("--compile failed, generating uncompiled from now on: %s",
                            message.splitlines()[0] if message else type(error).__name__)
        return stepper.step(tokens, states)

    return step


class ChunkedSampler:
    """Draws tokens :data:`CHUNK_TOKENS` at a time through the compiled chunk, or, with
    ``compile=False`` (the GPU's way: no per-token host sync), through the same function
    uncompiled. If compiling fails, this process goes on uncompiled (one warning, not one
    failed compile per request)."""

    def __init__(self, stepper: Any, config: GenerationConfig, banned: torch.Tensor,
                 generator: torch.Generator, *, compile: bool = True) -> None:
        self.stepper = stepper
        self.compile = compile
        self.banned = banned
        self.generator = generator
        self.knobs = SamplingKnobs.from_config(config, banned.numel(), banned.device)

    def next_chunk(self, tokens: torch.Tensor, states: list[Any], seen: torch.Tensor | None
                   ) -> tuple[torch.Tensor, list[Any], torch.Tensor | None]:
        global _compiled
        uniforms = torch.rand(CHUNK_TOKENS, tokens.size(0), generator=self.generator,
                              device=tokens.device)
        args = (self.stepper, tokens, states, seen, uniforms, self.banned, self.knobs)
        if not self.compile:
            return chunk(*args)
        run = compiled_chunk()
        if run is chunk:
            return chunk(*args)
        try:
            return run(*args)
        except Exception as error:  # any compiler failure: go on uncompiled
            message = str(error).strip()
            log.warning("--compile failed, generating uncompiled from now on: %s",
                        message.splitlines()[0] if message else type(error).__name__)
            _compiled = chunk
            return chunk(*args)
