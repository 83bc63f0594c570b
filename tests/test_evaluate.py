"""Evaluation over a token stream scores every token after the first exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from weft.config import ModelConfig
from weft.models.rnn_lm import RNNLanguageModel
from weft.training.evaluate import stream_loss


def _context_free_model() -> RNNLanguageModel:
    """A model whose prediction ignores the text: its recurrent weights are zero, so each
    token's loss depends on that token alone and a sum over tokens shows which were scored."""
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(vocab_size=20, hidden_size=8, embedding_dim=4)).eval()
    with torch.no_grad():
        for parameter in model.rnn.parameters():
            parameter.zero_()
    return model


@pytest.mark.parametrize(("length", "batch_size", "seq_len"),
                         [(2, 32, 256), (27, 3, 4), (100, 32, 3), (257, 5, 16), (1000, 7, 50)])
def test_every_token_after_the_first_is_scored_once(length: int, batch_size: int,
                                                     seq_len: int) -> None:
    model = _context_free_model()
    ids = np.random.default_rng(length).integers(0, 20, length)
    with torch.no_grad():
        logits, _, _ = model(torch.zeros(1, 1, dtype=torch.long))
    token_nats = -torch.log_softmax(logits[0, 0], -1).double().numpy()
    total, count = stream_loss(model, ids, batch_size=batch_size, seq_len=seq_len)
    assert count == length - 1
    assert total == pytest.approx(float(token_nats[ids[1:]].sum()), rel=1e-5)


def test_a_memory_mapped_stream_is_read_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ids.bin"
    ids = np.memmap(path, dtype=np.uint16, mode="w+", shape=(500,))
    ids[:] = np.arange(500) % 20
    ids.flush()
    mapped = np.memmap(path, dtype=np.uint16, mode="r", shape=(500,))
    model = _context_free_model()
    assert stream_loss(model, mapped, batch_size=4, seq_len=16) == pytest.approx(
        stream_loss(model, np.array(mapped, dtype=np.int64), batch_size=4, seq_len=16))
