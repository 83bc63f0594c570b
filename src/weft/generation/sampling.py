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


def next_tokens(
    logits: torch.Tensor,
    config: GenerationConfig,
    *,
    seen: torch.Tensor | None = None,
    banned: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample one token per row of ``logits`` ``(batch, vocab)``.

    Each row takes one uniform in [0, 1) (from ``uniforms`` ``(batch,)``, else drawn from
    ``generator``) and becomes the first token whose running probability sum exceeds
    ``uniform * total``. A row's token depends only on its own logits and uniform, so a row
    batched with others (the server's shared batch) samples exactly as it does alone.

    Extreme settings (a temperature of 1e-200, a penalty of 1e-40) must never crash: overflowed
    logits are clamped to the largest float, and a row left with no finite probability falls
    back to its greedy choice.
    """
    logits = logits.float()
    if banned is not None:
        logits = logits.masked_fill(banned, float("-inf"))
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    if config.temperature < MIN_TEMPERATURE:
        return finite_or_minus_inf(logits).argmax(dim=-1)
    if uniforms is None:
        uniforms = torch.rand(logits.size(0), generator=generator, device=logits.device,
                              dtype=torch.float32)
    if logits.device.type == "cpu":
        # The usual case in a few ops (on a CPU the check costs no device sync). Rows with NaN,
        # infinities or no mass take the careful path below.
        cumulative = torch.softmax(_filter(logits / config.temperature, config),
                                   dim=-1).cumsum(dim=-1)
        if bool((cumulative[:, -1] > 0).all()):  # False for NaN rows as well
            return pick_by_running_sum(cumulative, uniforms)
    logits = finite_or_minus_inf(logits)
    greedy = logits.argmax(dim=-1)
    scaled = finite_or_minus_inf(logits / config.temperature)
    cumulative = torch.softmax(_filter(scaled, config), dim=-1).cumsum(dim=-1)
    drawn = pick_by_running_sum(cumulative, uniforms)
    return torch.where(cumulative[:, -1] > 0, drawn, greedy)  # False for NaN totals too


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
