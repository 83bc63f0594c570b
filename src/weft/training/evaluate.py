"""Measuring a language model on text: loss per token, bits per character, perplexity."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from weft.device import autocast
from weft.models.rnn_lm import RNNLanguageModel


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean nats per predicted token
    bits_per_char: float  # total bits over the characters of the text (tokenizer-independent)
    perplexity: float
    tokens: int  # predicted tokens
    characters: int
    unknown: int = 0  # tokens mapped to <unk>
    # Runs with label columns: per column, the accuracy of the likeliest label and its
    # majority-class baseline (weft.training.classify.LabelAccuracy as dicts).
    labels: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def stream_loss(
    model: RNNLanguageModel,
    ids: np.ndarray,
    *,
    batch_size: int = 32,
    seq_len: int = 256,
    precision: torch.dtype | None = None,
) -> tuple[float, int]:
    """Total nats and number of predicted tokens over a token stream.

    The stream is cut into ``batch_size`` columns read with the state carried across windows
    (as in training). Each column ends with the next one's first token, which it predicts, and
    tokens that do not fill the columns are scored as one more stream (from the last column's
    last token), so every token after the first is predicted exactly once.
    """
    device = model.device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    n = len(ids)
    if n < 2:
        return 0.0, 0
    columns = max(1, min(batch_size, (n - 1) // max(seq_len, 1)))
    col_len = (n - 1) // columns  # predictions per column
    # Overlapping rows of col_len + 1 tokens, a view (``ids`` may be a memory-mapped corpus).
    step = ids.strides[0]
    pieces = [np.lib.stride_tricks.as_strided(ids, shape=(columns, col_len + 1),
                                              strides=(col_len * step, step), writeable=False)]
    if n - 1 > col_len * columns:
        pieces.append(ids[col_len * columns:][None, :])
    for piece in pieces:
        state = None
        for start in range(0, piece.shape[1] - 1, seq_len):
            end = min(start + seq_len, piece.shape[1] - 1)
            # Widen one window at a time: ``ids`` may be a memory-mapped corpus.
            window = torch.from_numpy(piece[:, start : end + 1].astype(np.int64)).to(device)
            with autocast(device, precision):
                nats, state = model.target_nats(window[:, :-1], window[:, 1:], state)
            total += float(nats.sum())
            count += window.size(0) * (end - start)
    model.train(was_training)
    return total, count


def summarize(total_nats: float, tokens: int, characters: int, unknown: int = 0) -> EvalResult:
    loss = total_nats / max(tokens, 1)
    return EvalResult(
        loss=loss,
        bits_per_char=total_nats / math.log(2) / max(characters, 1),
        perplexity=math.exp(min(loss, 700.0)),
        tokens=tokens,
        characters=characters,
        unknown=unknown,
    )
