"""A linear-chain CRF over per-token tag scores: training loss, Viterbi decoding, marginals.

All operations are batched over padded sentences with a mask; the only Python loop runs over
time steps (each step handles the whole batch and every pair of tags at once). Masked positions
keep the previous state, so padding never changes a sentence's result. Every sentence must have
at least one token and masks must be left-aligned (``True`` then ``False``).

Decoding and marginals run in NumPy on the CPU: a step is a few operations on a ``(B, K, K)``
array, and NumPy's per-call cost is a fraction of PyTorch's, which dominated a long sentence
(one step per token). Training stays in PyTorch for autograd.

:meth:`CRF.constrain` forbids transitions (a span tag set's ``I-X`` after ``O``): training then
scores them at :data:`FORBIDDEN` and decoding at minus infinity, so no forbidden sequence is
ever decoded, whatever the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

FORBIDDEN = -1e4  # a finite stand-in for -inf in training: 0 * -inf on padding would be NaN


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = x.max(axis=axis, keepdims=True)
    return np.log(np.exp(x - peak).sum(axis=axis)) + peak.squeeze(axis)


class CRF(nn.Module):
    """Transition scores ``transitions[i, j]`` for tag ``i`` followed by tag ``j``."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        # Not saved with the weights: derived from the tag set when the model is built.
        self.register_buffer("allowed", torch.ones(num_tags, num_tags, dtype=torch.bool),
                             persistent=False)
        self.register_buffer("allowed_start", torch.ones(num_tags, dtype=torch.bool),
                             persistent=False)
        self.register_buffer("allowed_end", torch.ones(num_tags, dtype=torch.bool),
                             persistent=False)

    def constrain(
        self, allowed: Sequence[Sequence[bool]], start: Sequence[bool], end: Sequence[bool]
    ) -> None:
        """Allow only these transitions, first tags and last tags."""
        device = self.transitions.device
        self.allowed = torch.tensor(allowed, dtype=torch.bool, device=device)
        self.allowed_start = torch.tensor(start, dtype=torch.bool, device=device)
        self.allowed_end = torch.tensor(end, dtype=torch.bool, device=device)

    def _scores(self, fill: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transition, start and end scores with the forbidden ones set to ``fill``."""
        return (self.transitions.masked_fill(~self.allowed, fill),
                self.start.masked_fill(~self.allowed_start, fill),
                self.end.masked_fill(~self.allowed_end, fill))

    def _numpy_scores(self, fill: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        trans, start, end = (p.detach().float().cpu().numpy() for p in self._scores(fill))
        return trans, start, end

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Unnormalized score of the given tag sequences, shape ``(batch,)``."""
        transitions, start, end = self._scores(FORBIDDEN)
        m = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        total = start[tags[:, 0]] + (emit * m).sum(1)
        trans = transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        total = total + (trans * m[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return total + end[last]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z of each sentence by the forward algorithm, shape ``(batch,)``."""
        transitions, start, end = self._scores(FORBIDDEN)
        alpha = start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def neg_log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Summed negative log-likelihood of the gold sequences."""
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).sum()

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token tag probabilities ``(B, T, K)`` by the forward-backward algorithm.

        In float64: log Z grows with the sentence, and in float32 a 20,000-word sentence had
        rows summing to 0.95. Padding rows are zeros."""
        trans32, start32, end32 = self._numpy_scores(FORBIDDEN)
        trans, start, end = (a.astype(np.float64) for a in (trans32, start32, end32))
        em = emissions.detach().double().cpu().numpy()
        lengths = mask.sum(1).cpu().numpy()
        batch, length, _ = em.shape
        alpha = np.empty_like(em)
        beta = np.zeros_like(em)
        alpha[:, 0] = start + em[:, 0]
        for t in range(1, length):
            alpha[:, t] = _logsumexp(alpha[:, t - 1, :, None] + trans, axis=1) + em[:, t]
        rows = np.arange(batch)
        last = lengths - 1
        beta[rows, last] = end  # each sentence's backward pass starts at its own last token
        for t in range(length - 2, -1, -1):
            step = _logsumexp(trans + (em[:, t + 1] + beta[:, t + 1])[:, None, :], axis=2)
            inside = (t < last)[:, None]
            beta[:, t] = np.where(inside, step, beta[:, t])
        log_z = _logsumexp(alpha[rows, last] + end, axis=1)
        valid = (np.arange(length)[None, :] < lengths[:, None])[:, :, None]
        # padding positions would hold alpha from a longer run: -inf, not 0 * exp(overflow)
        probs = np.exp(np.where(valid, alpha + beta - log_z[:, None, None], -np.inf))
        return torch.from_numpy(probs).float().to(emissions.device)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tag sequence of each sentence (Viterbi), ``(B, T)``; padding positions hold 0.

        Ties go to the lowest tag id, as ``torch.max`` breaks them."""
        trans, start, end = self._numpy_scores(float("-inf"))
        em = emissions.detach().float().cpu().numpy()
        lengths = mask.sum(1).cpu().numpy()
        batch, length, _ = em.shape
        out = np.zeros((batch, length), dtype=np.int64)
        if batch == 0:
            return torch.from_numpy(out).to(emissions.device)
        shortest = int(lengths.min())
        history = np.empty((max(length - 1, 0), batch, self.num_tags), dtype=np.int64)
        score = start + em[:, 0]
        for t in range(1, length):
            total = score[:, :, None] + trans  # (B, K_prev, K)
            index = total.argmax(axis=1)
            history[t - 1] = index
            step = np.take_along_axis(total, index[:, None, :], axis=1)[:, 0] + em[:, t]
            # a finished sentence keeps its score (the mask is left-aligned)
            score = step if t < shortest else np.where((t < lengths)[:, None], step, score)
        best_last = (score + end).argmax(axis=1)
        for b in range(batch):
            n = int(lengths[b])
            tag = int(best_last[b])
            row = history[:, b, :]
            path = out[b]
            path[n - 1] = tag
            for t in range(n - 1, 0, -1):  # Python ints: a NumPy call per step costs 10x more
                tag = int(row[t - 1, tag])
                path[t - 1] = tag
        return torch.from_numpy(out).to(emissions.device)
