"""A linear-chain CRF over per-token tag scores: training loss, Viterbi decoding, marginals.

All operations are batched over padded sentences with a mask; the only Python loop runs over
time steps (each step handles the whole batch). Masked positions keep the previous state, so
padding never changes a sentence's result. Every sentence must have at least one token and
masks must be left-aligned (``True`` then ``False``).
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    """Transition scores ``transitions[i, j]`` for tag ``i`` followed by tag ``j``."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Unnormalized score of the given tag sequences, shape ``(batch,)``."""
        m = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        total = self.start[tags[:, 0]] + (emit * m).sum(1)
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        total = total + (trans * m[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return total + self.end[last]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z of each sentence by the forward algorithm, shape ``(batch,)``."""
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def neg_log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Summed negative log-likelihood of the gold sequences."""
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).sum()

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token tag probabilities ``(B, T, K)``: the gradient of log Z w.r.t. the emissions.

        In float64: log Z grows with the sentence, and in float32 the gradient of a log Z in the
        tens of thousands lost its digits (a 20,000-word sentence had rows summing to 0.95)."""
        with torch.enable_grad():
            em = emissions.detach().double().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_partition(em, mask).sum(), em)
        return (grad * mask.unsqueeze(2)).float()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tag sequence of each sentence (Viterbi), ``(B, T)``; padding positions hold 0."""
        batch, length, _ = emissions.shape
        score = self.start + emissions[:, 0]
        history = []
        for t in range(1, length):
            total = score.unsqueeze(2) + self.transitions  # (B, K_prev, K)
            best, index = total.max(dim=1)
            step = best + emissions[:, t]
            keep = mask[:, t : t + 1]
            score = torch.where(keep, step, score)
            # on padding, point each tag to itself so backtracking passes through unchanged
            identity = torch.arange(self.num_tags, device=emissions.device).expand_as(index)
            history.append(torch.where(keep, index, identity))
        score = score + self.end
        best_last = score.argmax(dim=1)
        path = [best_last]
        for index in reversed(history):
            best_last = index.gather(1, best_last.unsqueeze(1)).squeeze(1)
            path.append(best_last)
        path.reverse()
        tags = torch.stack(path, dim=1) if length > 1 else best_last.unsqueeze(1)
        return tags * mask.long() if batch else tags
