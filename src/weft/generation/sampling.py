"""Turning next-token logits into token ids: temperature, top-k, top-p, repetition penalty.

All of it is tensor arithmetic over the whole ``(batch, vocab)`` logits: no Python work per
vocabulary entry.
"""

from __future__ import annotations

import torch

from weft.config import GenerationConfig


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float | torch.Tensor
) -> torch.Tensor:
    """CTRL-style penalty (Keskar et al. 2019) on tokens already in the text (a tensor
    ``penalty`` is always applied: the compiled sampler decides before it calls)."""
    if not isinstance(penalty, torch.Tensor) and penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability adds up to at least ``p``."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    # Drop a token when the mass before it already reaches p (the top token always stays).
    drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# Below this, dividing by the temperature overflows float32; such a temperature is greedy anyway.
MIN_TEMPERATURE = 1e-4
# torch.multinomial draws one exponential per vocabulary entry; from this many rows on, one
# uniform per row and a search of the cumulative sums is cheaper (at 64 rows of 65 tokens:
# the sampling share of a step falls from about 300 us to a few tens). For fewer rows, the
# single multinomial call has fewer ops.
INVERSE_CDF_FROM_ROWS = 8


def next_tokens(
    logits: torch.Tensor,
    config: GenerationConfig,
    *,
    seen: torch.Tensor | None = None,
    banned: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one token per row of ``logits`` ``(batch, vocab)``.

    Extreme settings (a temperature of 1e-200, a penalty of 1e-40) must never crash: overflowed
    logits are clamped to the largest float, and a row left with no finite probability falls
    back to its greedy choice.
    """
    logits = logits.float()
    if banned is not None:
        logits = logits.masked_fill(banned, float("-inf"))
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    if config.temperature >= MIN_TEMPERATURE and logits.device.type == "cpu":
        # The usual case in a few ops. Rows with NaN, infinities or no mass (which the CPU
        # multinomial rejects itself, and the running-sum check below catches) take the
        # careful path after this block.
        probs = torch.softmax(_filter(logits / config.temperature, config), dim=-1)
        if probs.size(0) >= INVERSE_CDF_FROM_ROWS:
            cumulative = probs.cumsum(dim=-1)
            total = cumulative[:, -1:]
            if bool((total > 0).all()):  # False for NaN rows as well
                return _inverse_cdf(cumulative, total, generator)
        else:
            try:
                return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            except RuntimeError:
                pass
    logits = finite_or_minus_inf(logits)
    greedy = logits.argmax(dim=-1)
    if config.temperature < MIN_TEMPERATURE:
        return greedy
    probs = torch.softmax(_filter(finite_or_minus_inf(logits / config.temperature), config),
                          dim=-1)
    broken = ~torch.isfinite(probs).all(dim=-1) | (probs.sum(dim=-1) <= 0)
    if bool(broken.any()):
        probs[broken] = torch.nn.functional.one_hot(greedy[broken], probs.size(-1)).float()
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _inverse_cdf(
    cumulative: torch.Tensor, total: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    u = torch.rand(total.shape, generator=generator, device=total.device, dtype=total.dtype)
    return pick_by_running_sum(cumulative, u.squeeze(-1))


def pick_by_running_sum(cumulative: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row, drawn with the probabilities whose running sums are ``cumulative``,
    given one uniform in [0, 1) per row.

    ``u * total`` lies in [0, total), so the first entry whose running sum exceeds it exists
    and has a probability above zero: filtered and banned tokens are never drawn.
    """
    target = uniforms[:, None] * cumulative[:, -1:]
    index = torch.searchsorted(cumulative, target, right=True)
    return index.clamp(max=cumulative.size(-1) - 1).squeeze(-1)


def _filter(logits: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    return filter_top_p(filter_top_k(logits, config.top_k), config.top_p)


def finite_or_minus_inf(logits: torch.Tensor) -> torch.Tensor:
    """NaN becomes -inf (never drawn), +inf the largest float (drawn, without NaN arithmetic)."""
    big = torch.finfo(logits.dtype).max
    return torch.nan_to_num(logits, nan=float("-inf"), posinf=big, neginf=float("-inf"))
